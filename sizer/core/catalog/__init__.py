"""Which models sizer knows: the shipped and user catalogs (`model_catalog`, one `ModelEntry`
per model in `entry`), family files (`family_file`), entries built from a config.json
(`from_config`, `build`, `local`, `user`) or from the Hub (`hub`), what a name on the command
line means (`lookup`) and where a model's files are on this machine (`resolve`)."""
