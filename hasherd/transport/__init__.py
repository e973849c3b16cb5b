"""The asyncio edge: Unix sockets (``unix``), the jitter RPC clients, serial links
(``serial_link``: ttys, ptys and ``socket://`` through pyserial-asyncio)."""
