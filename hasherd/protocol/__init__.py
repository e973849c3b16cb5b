"""Pure wire codecs: bytes <-> frozen dataclasses, with no sockets and no event loop."""
