"""Housekeeping: removing what has served its time."""
