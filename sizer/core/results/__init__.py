"""What a run leaves behind: the SQLite trial cache (`store`) and the TOML report (`report`)."""
