"""The audit API: the event log, for auditors replaying history."""
