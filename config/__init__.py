"""Configuration: the strict schema, the YAML loader and the hot-reloading runtime."""
