"""Cross-hardware validation: stored weights re-evaluated on two sides (docs/validation.md)."""
