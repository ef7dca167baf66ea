"""Kafka for every role: the topics and consumer groups (`topics`), and the wire format of a
published event, written by the relay and read by every consumer (`wire`)."""
