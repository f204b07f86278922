"""Model recipes (see README.md)."""
