"""goloop's TLS protocol: asyncio's SSLProtocol with its per-record path in C.

The TLS engine is the ssl module's (SSLObject over two MemoryBIOs, so
certificates, verification and every SSLContext option are stock's). What
every record goes through, get_buffer/buffer_updated into the incoming BIO,
the SSLObject.read loop into the app protocol, _write_appdata/_do_write
through SSLObject.write and the outgoing BIO into the socket transport, is
``_goloop.SSLProtocolCore`` (pybridge/sslproto.c), asyncio's methods step
for step; so are the app transport's write, is_closing and
get_write_buffer_size (``_goloop.SSLTransportCore``), which protocols call
per write. Everything else (handshake, shutdown, timeouts, errors, the rest
of the app transport) is asyncio's own code, found through the MRO, with
the state where asyncio's code keeps it.
"""

import ssl
from asyncio import sslproto

from . import _goloop


class _SSLProtocolTransport(_goloop.SSLTransportCore, sslproto._SSLProtocolTransport):
    """asyncio's app transport; the C core's methods come first in the MRO."""


class SSLProtocol(_goloop.SSLProtocolCore, sslproto.SSLProtocol):
    """asyncio's SSLProtocol; the C core's methods come first in the MRO."""

    def _get_app_transport(self):
        # asyncio's, making goloop's app transport (asyncio's method names
        # its module's class).
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError("Creating _SSLProtocolTransport twice")
            self._app_transport = _SSLProtocolTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport


_goloop._ssl_setup(
    (
        sslproto.SSLProtocolState.UNWRAPPED,
        sslproto.SSLProtocolState.DO_HANDSHAKE,
        sslproto.SSLProtocolState.WRAPPED,
        sslproto.SSLProtocolState.FLUSHING,
        sslproto.SSLProtocolState.SHUTDOWN,
    ),
    sslproto.SSLAgainErrors,
    sslproto.SSLProtocol._write_appdata,
    sslproto.SSLProtocol.get_buffer,
    ssl.SSLObject,
    SSLProtocol,
)
