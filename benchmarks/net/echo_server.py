"""Echo server for the network benchmarks, on any of the event loops.

    python benchmarks/net/echo_server.py --loop asyncio|uvloop|rloop|goloop
        --mode protocol|buffered|streams|sock
        --addr tcp:127.0.0.1:PORT|udp:127.0.0.1:PORT|unix:/path
        [--tls CERT.pem,KEY.pem]
    python benchmarks/net/echo_server.py --probe LOOP

Modes:
  protocol  asyncio.Protocol; transport.write() in data_received()
  buffered  asyncio.BufferedProtocol; get_buffer() / buffer_updated()
  streams   asyncio.start_server / start_unix_server; reader.read(),
            writer.write(), await writer.drain()
  sock      loop.sock_accept(), then one task per connection doing
            loop.sock_recv() + loop.sock_sendall()

With ``--tls``, the protocol, buffered and streams servers are TLS servers
(``ssl=`` an SSLContext with that certificate chain): what the loop's TLS
protocol costs per record and per handshake.

Over ``udp:`` addresses, ``protocol`` is an asyncio.DatagramProtocol on
create_datagram_endpoint() (sendto() in datagram_received()) and ``sock``
one task doing loop.sock_recvfrom() + loop.sock_sendto(); the other modes
have no datagram form.

Prints ``READY <addr>`` (port 0 becomes the real port) once listening and
exits on SIGTERM.  ``UNSUPPORTED <reason>`` (exit 3) when the loop lacks an
API the mode needs, ``UNAVAILABLE <reason>`` (exit 3) when the loop cannot
be imported.  ``--probe`` prints the loop's version and module path as JSON.
"""

import argparse
import asyncio
import json
import os
import socket
import ssl
import sys

import netcommon

READ_SIZE = 256 * 1024  # like the transports' own read size


# ---------------------------------------------------------------- modes


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoBufferedProtocol(asyncio.BufferedProtocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray(READ_SIZE)
        # A memoryview, not the bytearray: asyncio's SSLProtocol (3.11-3.13)
        # fills the rest of a short read through buf[offset:], which on a
        # bytearray is a copy, so TLS records after the first would be lost
        # (the 64 KiB TLS echo came back wrong from byte 1186 on).
        self.view = memoryview(self.buffer)

    def get_buffer(self, sizehint):
        return self.view

    def buffer_updated(self, nbytes):
        # Slicing copies: the transport may keep the data past this call.
        self.transport.write(self.buffer[:nbytes])


class EchoDatagramProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class DatagramServer:
    """What serve() needs of a server, for a datagram endpoint."""

    def __init__(self, transport):
        self.transport = transport
        self.sockets = [transport.get_extra_info("socket")]

    def close(self):
        self.transport.close()


async def _datagram_server(loop, addr):
    transport, _ = await loop.create_datagram_endpoint(
        EchoDatagramProtocol, local_addr=(addr[1], addr[2])
    )
    return DatagramServer(transport)


def _ssl_kwargs(tls):
    # Plain servers pass no ssl= at all, as before TLS rows existed.
    return {"ssl": tls} if tls else {}


async def _transport_server(loop, addr, backlog, tls, factory):
    kwargs = {"backlog": backlog, **_ssl_kwargs(tls)}
    if addr[0] == "unix":
        return await loop.create_unix_server(factory, addr[1], **kwargs)
    return await loop.create_server(factory, addr[1], addr[2], **kwargs)


async def serve_protocol(loop, addr, backlog, tls):
    if addr[0] == "udp":
        return await _datagram_server(loop, addr)
    return await _transport_server(loop, addr, backlog, tls, EchoProtocol)


async def serve_buffered(loop, addr, backlog, tls):
    return await _transport_server(loop, addr, backlog, tls, EchoBufferedProtocol)


async def _echo_stream(reader, writer):
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve_streams(loop, addr, backlog, tls):
    kwargs = {"backlog": backlog, **_ssl_kwargs(tls)}
    if addr[0] == "unix":
        return await asyncio.start_unix_server(_echo_stream, addr[1], **kwargs)
    return await asyncio.start_server(_echo_stream, addr[1], addr[2], **kwargs)


class SockServer:
    """Accept loop on a plain listening socket; one echo task per client."""

    def __init__(self, loop, listener):
        self.loop = loop
        self.listener = listener
        self.sockets = [listener]
        self.tasks = set()
        self.acceptor = loop.create_task(self._accept())

    async def _accept(self):
        while True:
            conn, _ = await self.loop.sock_accept(self.listener)
            conn.setblocking(False)
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self.loop.create_task(self._echo(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _echo(self, conn):
        with conn:
            try:
                while data := await self.loop.sock_recv(conn, READ_SIZE):
                    await self.loop.sock_sendall(conn, data)
            except ConnectionError:
                pass

    def close(self):
        self.acceptor.cancel()
        self.listener.close()


class SockDatagramServer:
    """One task echoing datagrams with sock_recvfrom() / sock_sendto()."""

    def __init__(self, loop, sock, first):
        self.loop = loop
        self.sockets = [sock]
        self.task = loop.create_task(self._echo(sock, first))

    async def _echo(self, sock, first):
        data, addr = await first
        while True:
            await self.loop.sock_sendto(sock, data, addr)
            data, addr = await self.loop.sock_recvfrom(sock, 65536)

    def close(self):
        self.task.cancel()
        self.sockets[0].close()


def _listener(addr, backlog):
    if addr[0] == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(addr[1])
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr[1], addr[2]))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


async def serve_sock(loop, addr, backlog, tls):
    if addr[0] == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((addr[1], addr[2]))
        sock.setblocking(False)
        # A loop without sock_recvfrom fails at the first await: say so now.
        first = loop.create_task(loop.sock_recvfrom(sock, 65536))
        await asyncio.sleep(0)
        if first.done() and isinstance(first.exception(), NotImplementedError):
            raise first.exception()
        return SockDatagramServer(loop, sock, first)
    return SockServer(loop, _listener(addr, backlog))


MODES = {
    "protocol": serve_protocol,
    "buffered": serve_buffered,
    "streams": serve_streams,
    "sock": serve_sock,
}


# ----------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="echo server for the network benchmarks")
    p.add_argument("--loop", choices=netcommon.LOOPS, default="asyncio")
    p.add_argument("--mode", choices=list(MODES), default="protocol")
    p.add_argument(
        "--addr", default="tcp:127.0.0.1:0", help="tcp:HOST:PORT, udp:HOST:PORT or unix:PATH"
    )
    p.add_argument("--backlog", type=int, default=1024)
    p.add_argument("--tls", metavar="CERT.pem,KEY.pem", help="serve TLS with this certificate")
    p.add_argument("--probe", choices=netcommon.LOOPS, help="print loop version / path, exit")
    args = p.parse_args(argv)
    try:
        args.addr = netcommon.parse_addr(args.addr)
    except ValueError as exc:
        p.error(str(exc))
    if args.addr[0] == "udp" and args.mode not in ("protocol", "sock"):
        p.error(f"--mode {args.mode} has no datagram form (udp: protocol or sock)")
    if args.tls and (args.addr[0] == "udp" or args.mode == "sock"):
        p.error("--tls needs a stream address and mode protocol, buffered or streams")
    return args


def tls_context(cert_key):
    certfile, _, keyfile = cert_key.partition(",")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


async def serve(loop, args):
    stop = asyncio.Event()
    netcommon.install_stop(loop, stop)
    if args.addr[0] == "unix" and os.path.exists(args.addr[1]):
        os.unlink(args.addr[1])
    try:
        tls = tls_context(args.tls) if args.tls else None
        server = await MODES[args.mode](loop, args.addr, args.backlog, tls)
    except (NotImplementedError, AttributeError) as exc:
        netcommon.say("UNSUPPORTED", f"{args.mode} mode: {netcommon.describe(exc)}")
        return netcommon.EXIT_UNSUPPORTED
    netcommon.say("READY", netcommon.format_addr(server.sockets[0]))
    await stop.wait()
    server.close()
    if args.addr[0] == "unix":
        os.unlink(args.addr[1])
    return 0


def probe(name):
    try:
        loop = netcommon.make_loop(name)
    except Exception as exc:  # noqa: BLE001 - any import / creation failure
        print(json.dumps({"status": "unavailable", "error": netcommon.describe(exc)}))
        return netcommon.EXIT_UNSUPPORTED
    loop.close()
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    info = {"status": "ok", "version": netcommon.loop_version(name), "path": path}
    print(json.dumps(info))
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.probe:
        return probe(args.probe)
    return netcommon.serve_on_loop(args.loop, serve, args)


if __name__ == "__main__":
    sys.exit(main())
