"""Stage: data acquisition (download) and receiver functions of real stations."""
