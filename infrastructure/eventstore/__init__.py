"""The event store: msgspec-encoded domain events in the eventsourcing library's
PostgreSQL tables."""
