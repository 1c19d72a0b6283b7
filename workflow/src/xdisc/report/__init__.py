"""Reports: comparison of the verdicts and figures (read artifacts; recompute no science)."""
