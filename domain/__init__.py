"""Pure domain model: aggregates, events, value objects and domain errors. No I/O."""
