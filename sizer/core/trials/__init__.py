"""One trial: a task's test examples through one model with one strategy (`trial`), the runner
that predicts them for each (task kind, strategy) (`runners`), prompts, retrieval, fine-tuning,
metrics with intervals (`scoring`), measurements (`measure`) and where a trial runs
(`placement`)."""
