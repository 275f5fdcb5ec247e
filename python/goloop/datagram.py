"""goloop's UDP datagram transport.

asyncio's ``_SelectorDatagramTransport`` with its per-datagram half in C
(``_goloop.DatagramTransportCore``, pybridge/datagram.c): ``_read_ready``
receives into a shared scratch buffer instead of allocating ``max_size``
bytes per datagram, and ``sendto`` replies to a recent sender without
Python code. Everything else (constructor, close, the write buffer, error
handling and messages) is asyncio's own class, which stays in the MRO.
AF_INET, AF_INET6 and AF_UNIX sockets get it (pybridge/sockaddr.c builds
their addresses as the socket module does); the loop gives other families
asyncio's transport.
"""

import socket
from asyncio import selector_events

from . import _goloop

_Stock = selector_events._SelectorDatagramTransport

FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


class DatagramTransport(_goloop.DatagramTransportCore, _Stock):
    """A datagram transport over a non-blocking AF_INET/AF_INET6/AF_UNIX socket."""

    def __init__(self, loop, sock, protocol, address=None, waiter=None, extra=None):
        self._init_core(sock.fileno())
        _Stock.__init__(self, loop, sock, protocol, address, waiter, extra)

    def _call_connection_lost(self, exc):
        self._forget_fd()  # the socket is closed below: its fd may be reused
        _Stock._call_connection_lost(self, exc)
