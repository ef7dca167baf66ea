"""Notifications: what was asked to be sent, to whom, and everything that happened since."""
