"""Everything that talks to Kafka: the topic plan, checkpoints, the control channel, the consumer library."""
