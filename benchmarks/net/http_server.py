"""Minimal HTTP/1.1 keep-alive server (httptools parser) on any of the loops.

    python benchmarks/net/http_server.py --loop asyncio|uvloop|rloop|goloop
        [--addr tcp:127.0.0.1:PORT]

Answers every request with a fixed ``200 OK`` "Hello, World!" response,
keeping the connection open unless the request asks to close it; an
unparsable request gets ``400`` and the connection closed.  Prints
``READY <addr>`` once listening (port 0 becomes the real port), exits on
SIGTERM; ``UNAVAILABLE <reason>`` (exit 3) when the loop or httptools
cannot be imported.
"""

import argparse
import asyncio
import sys

import netcommon

BODY = b"Hello, World!"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(BODY)
RESPONSE = HEAD + b"\r\n" + BODY
RESPONSE_CLOSE = HEAD + b"Connection: close\r\n\r\n" + BODY
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class HttpProtocol(asyncio.Protocol):
    def __init__(self, httptools):
        self.httptools = httptools
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except self.httptools.HttpParserError:
            self.transport.write(BAD_REQUEST)
            self.transport.close()

    def on_message_complete(self):
        if self.parser.should_keep_alive():
            self.transport.write(RESPONSE)
        else:
            self.transport.write(RESPONSE_CLOSE)
            self.transport.close()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="hello-world HTTP server for the benchmarks")
    p.add_argument("--loop", choices=netcommon.LOOPS, default="asyncio")
    p.add_argument("--addr", default="tcp:127.0.0.1:0", help="tcp:HOST:PORT")
    p.add_argument("--backlog", type=int, default=1024)
    args = p.parse_args(argv)
    try:
        args.addr = netcommon.parse_addr(args.addr)
    except ValueError as exc:
        p.error(str(exc))
    if args.addr[0] != "tcp":
        p.error("--addr must be tcp:HOST:PORT")
    return args


async def serve(loop, args, httptools):
    stop = asyncio.Event()
    netcommon.install_stop(loop, stop)
    _, host, port = args.addr
    try:
        server = await loop.create_server(
            lambda: HttpProtocol(httptools), host, port, backlog=args.backlog
        )
    except (NotImplementedError, AttributeError) as exc:
        netcommon.say("UNSUPPORTED", netcommon.describe(exc))
        return netcommon.EXIT_UNSUPPORTED
    netcommon.say("READY", netcommon.format_addr(server.sockets[0]))
    await stop.wait()
    server.close()
    return 0


def main(argv=None):
    args = parse_args(argv)
    try:
        import httptools
    except ImportError as exc:
        netcommon.say("UNAVAILABLE", netcommon.describe(exc))
        return netcommon.EXIT_UNSUPPORTED
    return netcommon.serve_on_loop(args.loop, serve, args, httptools)


if __name__ == "__main__":
    sys.exit(main())
