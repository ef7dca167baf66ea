"""The notifications read model: each notification's current state, in PostgreSQL."""
