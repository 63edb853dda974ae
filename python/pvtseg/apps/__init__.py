"""Apps: thin programs on top of the runtime (cli, demo, bench; list_models for `pvtseg models`)."""
