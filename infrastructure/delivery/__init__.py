"""Delivery plumbing: provider SDK adapters, the provider simulator, and their credentials."""
