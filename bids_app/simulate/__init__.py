"""Stage 1 input: synthetic resting-state BOLD (HRFs, neural events, datasets)."""
