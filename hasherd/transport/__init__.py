"""The asyncio edge: Unix sockets (``unix``; the server core ``unix_server``, its peer
credentials ``peers``), the jitter RPC clients (``jitter_session``, their shared core;
``jitter_client``, ``jitter_async``), serial links (``serial_link``: ttys, ptys and
``socket://`` through pyserial-asyncio) and USB (``usb_link``)."""
