"""CLI subcommands, one module each; `sizer.cli` discovers them."""
