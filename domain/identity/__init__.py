"""Identity: users, their roles and their credentials, as event-sourced aggregates."""
