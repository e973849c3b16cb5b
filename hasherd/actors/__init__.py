"""Actors: one per device or service, each with a bounded mailbox and a state."""
