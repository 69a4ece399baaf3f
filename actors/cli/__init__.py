"""The operator's `polyarb` command (main) and its status view (status)."""
