"""Configuration schema of xdisc, installed as the package ``xdisc.schemas``."""
