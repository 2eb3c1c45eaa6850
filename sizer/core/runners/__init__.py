"""How one trial's examples are predicted, one module per kind of model and task.

A runner has `load()`, `prepare(task, train, test) -> (settings, prompt_digest, kept_test)` and
`predict(examples, on_batch)`, which calls `on_batch(rows)` with one stored record per example.
"""
