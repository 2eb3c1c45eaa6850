"""sizer's example tasks (the demo task banking.toml and the retrieval demo handbook.toml).
Installed as the package data `sizer._examples`; read them through
`sizer.core.paths.shipped_examples()`."""
