"""The `slt` command: operator jobs (status, flatten, rearm, halt, train, evaluate, model,
report)."""
