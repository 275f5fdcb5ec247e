"""Which getaddrinfo / getnameinfo stock asyncio would call.

goloop's loop resolves names with libc's resolver on goroutines of its Go
engine (pybridge/resolve.c, which also encodes the arguments and builds the
answers as socket's functions do) instead of asyncio's thread pool. Stock's
loop calls whatever ``asyncio.base_events.socket`` holds at the time, so a
program (or a test) that replaces socket's functions must get the
replacement called; then goloop's loop takes asyncio's path too. This
module keeps socket's own functions as they were when goloop was imported,
before a program could replace them.
"""

import socket
from asyncio import base_events

# resolve.c compares asyncio.base_events.socket.getaddrinfo with this one.
_GETADDRINFO = socket.getaddrinfo
_GETNAMEINFO = socket.getnameinfo


def own_getnameinfo():
    """Whether stock would call socket's own getnameinfo right now."""
    return base_events.socket.getnameinfo is _GETNAMEINFO
