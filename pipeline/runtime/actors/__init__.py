"""Ray actors hosting the stages: one module per actor."""
