"""The `aimi` command line."""
