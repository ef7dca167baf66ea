"""Identity use cases: register users, change their roles, issue and revoke API keys."""
