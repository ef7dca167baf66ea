"""Notification queries, served from the notification_view read model."""
