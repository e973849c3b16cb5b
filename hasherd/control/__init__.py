"""The control socket: versioned JSON-lines messages, the daemon's server, hasherctl's client.

``protocol`` is pure (no event loop); ``server`` is the anyio edge; ``client`` is a small
blocking client for the command line. docs/control-protocol.md describes the wire format.
"""
