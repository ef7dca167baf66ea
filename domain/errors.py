"""Errors the domain raises when a rule is broken. Each says what was refused and why."""

from __future__ import annotations


class DomainError(Exception):
    """A command was refused because it would break a rule of the model."""


class NotFoundError(DomainError):
    """The aggregate a command names does not exist (or is not visible to the caller)."""


class ConflictError(DomainError):
    """The command is valid in general but not in the aggregate's current state."""


class InvalidValueError(DomainError, ValueError):
    """A value object refused its input. `field` names the offending input."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")
