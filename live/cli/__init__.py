"""The `live` command line: one module per command."""
