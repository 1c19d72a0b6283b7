"""Stage: synthetic receiver functions, their augmentation and synthetic stations."""
