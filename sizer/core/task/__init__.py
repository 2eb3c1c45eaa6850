"""The task: its spec and loading (`spec`), the files it names (`files`), writing it back
(`write`) and the seeded train/test split (`split`)."""
