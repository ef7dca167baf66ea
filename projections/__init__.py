"""Projections: consumers that build read models in PostgreSQL and Redis from events."""
