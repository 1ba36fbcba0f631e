"""Sweeps: the tuning stage, one process per point, and the signals that stop a sweep cleanly."""
