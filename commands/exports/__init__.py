"""Exports for data teams: streamed now, or written as a job; every one recorded."""
