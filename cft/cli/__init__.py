"""Command-line interface: `main.py` assembles one sub-command per module."""
