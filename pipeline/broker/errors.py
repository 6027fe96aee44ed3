"""Errors the local broker raises; both are OSErrors so callers can catch one builtin."""

from __future__ import annotations


class BrokerError(OSError):
    """The local Kafka broker could not be resolved, formatted, started or reached."""


class MissingToolError(BrokerError):
    """`java` or `mvn` is not installed (or too old); the message says how to install it."""
