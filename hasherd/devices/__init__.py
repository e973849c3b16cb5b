"""Chip-chain drivers: one module per chip family, and their registry."""
