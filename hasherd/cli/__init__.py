"""Command-line entry points (``hasherd``, ``hasherctl``). Nothing imports this package."""
