"""Asking for a scheduled job to run now."""
