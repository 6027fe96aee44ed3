"""Per-batch work: frames, decoding, models and tasks. Plain Python; never imports Ray or Kafka."""
