"""Moved to operators.analytics.queries; re-exported so existing imports keep working."""
from operators.analytics.queries import MatchState, QueryTracker, Transition  # noqa: F401
