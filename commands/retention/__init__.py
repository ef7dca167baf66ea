"""Retention: each tenant's policy, and archival past it."""
