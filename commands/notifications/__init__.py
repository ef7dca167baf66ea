"""Notification use cases: request one or many, cancel; each ends as events in the store."""
