"""The part that remembers: an indexer subscribed to the event topics, a LanceDB store, and search,
clips, summaries and an HTTP API over it (issue 12). One concern a module; see each docstring."""
