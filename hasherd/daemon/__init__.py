"""Daemon plumbing that the composition root wires together (systemd notification, ...)."""
