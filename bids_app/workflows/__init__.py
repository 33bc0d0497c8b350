"""Participant and group workflows: the pipeline as a handful of stage calls."""
