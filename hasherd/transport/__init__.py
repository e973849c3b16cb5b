"""The asyncio edge: sockets (and, later, serial and USB links)."""
