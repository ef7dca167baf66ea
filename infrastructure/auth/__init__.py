"""Authentication and authorisation plumbing shared by every HTTP route: passwords, tokens,
revocation, API keys, route policies and the guard that enforces them."""
