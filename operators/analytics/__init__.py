"""Stateful per-source analytics: tracks, zones, lines, windows and query intervals over SourceFrames."""
