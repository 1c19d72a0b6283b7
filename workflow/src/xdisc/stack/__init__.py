"""Stage: the conventional X verdict (moveout-corrected depth stacks, bootstrap bounds, vespagrams)."""
