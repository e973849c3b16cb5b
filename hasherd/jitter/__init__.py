"""The jitter RPC service: its memories, its socket and the server (docs/jitter-rpc.md)."""
