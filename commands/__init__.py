"""Write side: use cases that turn client commands into events in the event store."""
