"""The audit log: a projection of the event log recording who did what, and from where."""
