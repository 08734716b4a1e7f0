"""CLI subcommands, one module each (see `arc25.cli`)."""
