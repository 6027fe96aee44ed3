"""The runtime: a spec becomes Ray actors and one driver loop with an archive or a live policy."""
