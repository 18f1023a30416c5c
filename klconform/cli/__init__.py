"""The `klconform` command."""
