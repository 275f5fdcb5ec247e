"""TLS: ssl= on servers and connections, start_tls, and the TLS transport.

Every test runs on the stock loop and on goloop against real sockets (TCP on
127.0.0.1 and Unix paths), with certificates made for the session by the
openssl CLI: a CA, a server certificate for "localhost" and a client
certificate, both signed by the CA. Where the expected outcome is not
obvious (exception types and messages), it is what the stock loop gives.
"""

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import subprocess
import threading

import pytest
from loop_support import outcome, run_bounded, unix_path

CHUNK = 256 * 1024


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Paths of ca.pem, server.pem/server.key (localhost) and
    client.pem/client.key, the last two signed by the CA."""
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    # The extensions VERIFY_X509_STRICT asks for (3.13's default contexts set
    # it): key usage on the CA, an authority key identifier on the leaves.
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=goloop test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"), ("client", "DNS:client")):
        _openssl("req", "-new", *ec, "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)  # fmt: skip
        (d / f"{name}.ext").write_text(
            f"subjectAltName={san}\nauthorityKeyIdentifier=keyid,issuer\n"
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        )
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                 "-out", f"{name}.pem", cwd=d)  # fmt: skip
    return {p.name: str(p) for p in d.iterdir()}


def server_context(certs, client_cert=False):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs["server.pem"], certs["server.key"])
    if client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs["ca.pem"])
    return ctx


def client_context(certs, client_cert=False):
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    if client_cert:
        ctx.load_cert_chain(certs["client.pem"], certs["client.key"])
    return ctx


async def _echo(reader, writer):
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _start(kind, tmp_path, handler, ctx, **kwargs):
    """A streams server over kind ("tcp" or "unix"); (server, connect kwargs)."""
    if kind == "unix":
        path = unix_path(tmp_path)
        server = await asyncio.start_unix_server(handler, path, ssl=ctx, **kwargs)
        return server, {"path": path, "server_hostname": "localhost"}
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ctx, **kwargs)
    port = server.sockets[0].getsockname()[1]
    return server, {"host": "127.0.0.1", "port": port, "server_hostname": "localhost"}


async def _open(kind, where, ctx, **kwargs):
    if kind == "unix":
        return await asyncio.open_unix_connection(ssl=ctx, **where, **kwargs)
    return await asyncio.open_connection(ssl=ctx, **where, **kwargs)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_echo_and_extra_info(loop, kind, tmp_path, certs):
    sctx, cctx = server_context(certs), client_context(certs)
    cctx.set_alpn_protocols(["h2", "http/1.1"])
    sctx.set_alpn_protocols(["http/1.1"])
    seen_sni = []
    sctx.sni_callback = lambda sslobj, name, ctx: seen_sni.append(name)

    async def main():
        server, where = await _start(kind, tmp_path, _echo, sctx)
        reader, writer = await _open(kind, where, cctx)
        msgs = [os.urandom(n) for n in (1, 1000, 16384, 16385, 100_000)]
        for msg in msgs:
            writer.write(msg)
            assert await reader.readexactly(len(msg)) == msg
        writer.writelines([b"ab", bytearray(b"cd"), memoryview(b"ef")])
        assert await reader.readexactly(6) == b"abcdef"
        info = {
            name: writer.get_extra_info(name)
            for name in ("ssl_object", "peercert", "cipher", "compression", "sslcontext")
        }
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return info

    info = run_bounded(loop, main())
    assert isinstance(info["ssl_object"], ssl.SSLObject)
    assert info["ssl_object"].selected_alpn_protocol() == "http/1.1"
    assert dict(x[0] for x in info["peercert"]["subject"]) == {"commonName": "server"}
    assert info["cipher"] == info["ssl_object"].cipher()
    assert info["compression"] is None
    assert info["sslcontext"] is cctx
    assert seen_sni == ["localhost"]


def test_client_certificate(loop, tmp_path, certs):
    seen = []

    async def handler(reader, writer):
        seen.append(writer.get_extra_info("peercert"))
        await _echo(reader, writer)

    async def main():
        server, where = await _start("tcp", tmp_path, handler, server_context(certs, True))
        reader, writer = await _open("tcp", where, client_context(certs, client_cert=True))
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run_bounded(loop, main())
    assert dict(x[0] for x in seen[0]["subject"]) == {"commonName": "client"}


def _failure(loop, aw):
    try:
        run_bounded(loop, aw)
    except Exception as exc:  # the outcome under test
        return type(exc), str(exc)
    return None


def test_bad_certificate_like_stock(loop, stock_loop, tmp_path, certs):
    def scenario(lp):
        async def main():
            server, where = await _start("tcp", tmp_path, _echo, server_context(certs))
            try:
                # The default context trusts the system's CAs, not ours.
                await _open("tcp", where, ssl.create_default_context())
            finally:
                server.close()
                await server.wait_closed()

        return _failure(lp, main())

    got = scenario(loop)
    assert got[0] is ssl.SSLCertVerificationError
    assert got == scenario(stock_loop)


def _silent_listener():
    """A listening socket that never accepts: a TLS handshake gets no answer."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_handshake_timeout_like_stock(loop, stock_loop, certs):
    def scenario(lp):
        with _silent_listener() as listener:
            port = listener.getsockname()[1]
            return _failure(
                lp,
                asyncio.open_connection(
                    "127.0.0.1",
                    port,
                    ssl=client_context(certs),
                    server_hostname="localhost",
                    ssl_handshake_timeout=0.2,
                ),
            )

    got = scenario(loop)
    assert got is not None
    assert got == scenario(stock_loop)


def test_peer_closes_mid_handshake_like_stock(loop, stock_loop, certs):
    def scenario(lp):
        async def main():
            async def hang_up(reader, writer):
                await reader.read(10)  # part of the ClientHello
                writer.transport.abort()

            server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            try:
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client_context(certs), server_hostname="localhost"
                )
            finally:
                server.close()
                await server.wait_closed()

        return _failure(lp, main())

    got = scenario(loop)
    assert got is not None
    assert got == scenario(stock_loop)


class Recording(asyncio.Protocol):
    def __init__(self):
        self.events = []
        self.data = bytearray()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))
        self.lost.set_result(None)


def _server_side(lp, certs, client):
    """Run client(port) against a TLS server whose protocol records what
    happened; return the server protocol's events and data."""

    async def main():
        protos = []

        def factory():
            protos.append(Recording())
            return protos[-1]

        server = await lp.create_server(factory, "127.0.0.1", 0, ssl=server_context(certs))
        port = server.sockets[0].getsockname()[1]
        await client(port)
        await asyncio.wait_for(protos[0].lost, 5)
        server.close()
        await server.wait_closed()
        return protos[0].events, bytes(protos[0].data)

    return run_bounded(lp, main())


def _tls_client_socket(certs, port):
    raw = socket.create_connection(("127.0.0.1", port))
    return client_context(certs).wrap_socket(raw, server_hostname="localhost")


def test_close_notify_vs_abrupt_close_like_stock(loop, stock_loop, certs):
    async def close_notify(port):
        tls = await asyncio.to_thread(_tls_client_socket, certs, port)
        tls.sendall(b"bye")
        # Sends close_notify and waits for the server's (on this thread the
        # server could not answer).
        raw = await asyncio.to_thread(tls.unwrap)
        raw.close()

    async def abrupt(port):
        tls = await asyncio.to_thread(_tls_client_socket, certs, port)
        tls.sendall(b"bye")
        await asyncio.sleep(0.05)
        tls.close()  # SSLSocket.close() sends no close_notify

    expect = {
        close_notify: ["made", "eof", ("lost", None)],
        abrupt: ["made", ("lost", "ConnectionResetError")],
    }
    for client in (close_notify, abrupt):
        got = _server_side(loop, certs, client)
        assert got == (expect[client], b"bye")
        assert got == _server_side(stock_loop, certs, client)


def test_shutdown_timeout_like_stock(loop, stock_loop, certs):
    """A server closes and the peer never answers its close_notify: after
    ssl_shutdown_timeout the connection is aborted and the protocol sees
    connection_lost(TimeoutError), as stock."""

    def scenario(lp):
        peers = []

        class CloseAtOnce(Recording):
            def connection_made(self, transport):
                super().connection_made(transport)
                transport.close()

        async def main():
            proto = []

            def factory():
                proto.append(CloseAtOnce())
                return proto[-1]

            server = await lp.create_server(
                factory, "127.0.0.1", 0, ssl=server_context(certs), ssl_shutdown_timeout=0.2
            )
            port = server.sockets[0].getsockname()[1]
            # The peer finishes the handshake and then neither reads nor
            # closes until the server has given up.
            peers.append(await asyncio.to_thread(_tls_client_socket, certs, port))
            await asyncio.wait_for(proto[0].lost, 5)
            server.close()
            await server.wait_closed()
            return proto[0].events

        try:
            return run_bounded(lp, main())
        finally:
            for peer in peers:
                peer.close()

    got = scenario(loop)
    assert got == ["made", ("lost", "TimeoutError")]
    assert got == scenario(stock_loop)


def test_peer_closes_mid_record_like_stock(loop, stock_loop, certs):
    async def half_record(port):
        tls = await asyncio.to_thread(_tls_client_socket, certs, port)
        tls.sendall(b"x")  # a whole record
        await asyncio.sleep(0.05)
        # The header of an application-data record of 64 bytes and 10 of
        # them, written past the TLS layer, then the connection closes.
        os.write(tls.fileno(), b"\x17\x03\x03\x00\x40" + b"\0" * 10)
        tls.close()

    got = _server_side(loop, certs, half_record)
    assert got == (["made", ("lost", "ConnectionResetError")], b"x")
    assert got == _server_side(stock_loop, certs, half_record)


def test_renegotiation_refused_like_stock(loop, stock_loop, certs):
    """A TLS 1.2 client asks for renegotiation (openssl s_client's "R"
    command; TLS 1.3 has none): the server's OpenSSL refuses it, the client
    gives up with a handshake_failure alert, and the server's protocol sees
    what it received before and then connection_lost(SSLError), as stock."""

    def scenario(lp):
        got_hello, lost = threading.Event(), threading.Event()

        class Watching(Recording):
            def data_received(self, data):
                super().data_received(data)
                got_hello.set()

            def connection_lost(self, exc):
                super().connection_lost(exc)
                self.events[-1] += (str(exc),)
                lost.set()

        def s_client(port):
            # The with block closes the pipes (and waits) however it ends.
            with subprocess.Popen(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                 "-CAfile", certs["ca.pem"], "-servername", "localhost"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            ) as proc:  # fmt: skip
                try:
                    # s_client takes a command only at the start of what it
                    # reads from stdin: one line at a time, after the last
                    # was delivered.
                    proc.stdin.write(b"hello\n")
                    proc.stdin.flush()
                    assert got_hello.wait(10)
                    proc.stdin.write(b"R\n")
                    proc.stdin.flush()
                    assert lost.wait(10)
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.write(b"after\n")
                        proc.stdin.close()
                    out = proc.stdout.read().decode()
                    return proc.wait(10), "RENEGOTIATING" in out, "no renegotiation" in out
                finally:
                    proc.kill()

        async def main():
            ctx = server_context(certs)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            protos = []

            def factory():
                protos.append(Watching())
                return protos[-1]

            server = await lp.create_server(factory, "127.0.0.1", 0, ssl=ctx)
            port = server.sockets[0].getsockname()[1]
            client = await asyncio.to_thread(s_client, port)
            await asyncio.wait_for(protos[0].lost, 5)
            server.close()
            await server.wait_closed()
            return protos[0].events, bytes(protos[0].data), client

        return run_bounded(lp, main())

    got = scenario(loop)
    events, data, client = got
    assert events[:1] == ["made"] and events[1][:2] == ("lost", "SSLError")
    assert "handshake failure" in events[1][2]
    assert data == b"hello\n"
    assert client == (1, True, True)
    assert got == scenario(stock_loop)


def test_large_transfer_with_flow_control(loop, certs, tmp_path):
    """64 MiB each way while neither side reads for a while: both the TLS
    transport and the socket transport under it pause and resume."""
    size = 64 * 1024 * 1024
    block = os.urandom(1024 * 1024)

    class Sink(asyncio.Protocol):
        def __init__(self):
            self.pauses = 0
            self.got = hashlib.sha256()
            self.n = 0
            self.done = asyncio.get_running_loop().create_future()
            self.resumed = None

        def connection_made(self, transport):
            self.transport = transport
            transport.set_write_buffer_limits(high=256 * 1024)
            asyncio.get_running_loop().create_task(self.send())

        async def send(self):
            sent = 0
            while sent < size:
                self.transport.write(block)
                sent += len(block)
                if self.transport.get_write_buffer_size() > 256 * 1024:
                    self.resumed = asyncio.get_running_loop().create_future()
                    await self.resumed

        def pause_writing(self):
            self.pauses += 1

        def resume_writing(self):
            if self.resumed and not self.resumed.done():
                self.resumed.set_result(None)

        def data_received(self, data):
            self.got.update(data)
            self.n += len(data)
            if self.n == size:
                self.done.set_result(None)

    async def main():
        protos = []

        def factory():
            protos.append(Sink())
            return protos[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=server_context(certs))
        port = server.sockets[0].getsockname()[1]
        transport, client = await loop.create_connection(
            Sink, "127.0.0.1", port, ssl=client_context(certs), server_hostname="localhost"
        )
        # Stop reading on the client so the server's writes back up into the
        # socket transport under its TLS transport.
        transport.pause_reading()
        await asyncio.sleep(0.3)
        assert protos[0].pauses >= 1
        transport.resume_reading()
        await asyncio.wait_for(asyncio.gather(client.done, protos[0].done), 60)
        transport.close()
        server.close()
        await server.wait_closed()
        return client, protos[0]

    client, server_proto = run_bounded(loop, main(), timeout=90)
    want = hashlib.sha256(block * (size // len(block))).hexdigest()
    assert client.got.hexdigest() == want
    assert server_proto.got.hexdigest() == want
    assert client.pauses >= 1


def test_start_tls_upgrades_a_live_connection(loop, certs):
    async def main():
        async def handler(reader, writer):
            assert await reader.readexactly(8) == b"STARTTLS"
            writer.write(b"OK")
            await writer.drain()
            await writer.start_tls(server_context(certs))
            await _echo(reader, writer)

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS")
        assert await reader.readexactly(2) == b"OK"
        await writer.start_tls(client_context(certs), server_hostname="localhost")
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"secret" * 1000)
        assert await reader.readexactly(6000) == b"secret" * 1000
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run_bounded(loop, main())


def test_writes_after_close_like_stock(loop, stock_loop, tmp_path, certs, caplog):
    def scenario(lp):
        async def main():
            server, where = await _start("tcp", tmp_path, _echo, server_context(certs))
            reader, writer = await _open("tcp", where, client_context(certs))
            writer.close()
            results = [type(writer.transport).__name__]
            for _ in range(7):
                results.append(writer.transport.write(b"late"))
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
            return results

        # In debug mode (PYTHONASYNCIODEBUG=1) "Executing ... took N seconds"
        # depends on the machine's load, not on the transport.
        lp.slow_callback_duration = 60
        caplog.clear()
        got = run_bounded(lp, main())
        return got, [r.getMessage() for r in caplog.records]

    assert scenario(loop) == scenario(stock_loop)


def test_writelines_bad_item_like_stock(loop, stock_loop, tmp_path, certs, caplog):
    """A tuple among writelines' items is queued as the item it is, and the
    TLS write fails as a fatal error, as asyncio's SSLProtocol does."""

    def scenario(lp):
        async def main():
            server, where = await _start("tcp", tmp_path, _echo, server_context(certs))
            reader, writer = await _open("tcp", where, client_context(certs))
            got = [outcome(writer.transport.writelines, [b"ok", (b"x",)])]
            got.append(writer.transport.is_closing())
            writer.close()
            try:
                await writer.wait_closed()
            except Exception as exc:  # the outcome under test
                got.append(type(exc).__name__)
            server.close()
            await server.wait_closed()
            return got

        # In debug mode (PYTHONASYNCIODEBUG=1) "Executing ... took N seconds"
        # depends on the machine's load, not on the transport.
        lp.slow_callback_duration = 60
        caplog.clear()
        got = run_bounded(lp, main())
        # The first line: the rest names the protocol object (class, address).
        return got, [r.getMessage().splitlines()[0] for r in caplog.records]

    got = scenario(loop)
    assert got[0] == [("ok", None), False, "TypeError"]
    assert got[1][0] == "Fatal error on SSL protocol"
    assert got == scenario(stock_loop)


def test_app_transport_calls_like_stock(loop, stock_loop, tmp_path, certs):
    """What a protocol calls on the TLS transport per write: write() with
    every kind of argument, is_closing() and get_write_buffer_size()
    before and after close, as stock answers them."""

    class LooksLikeBytes:
        __class__ = bytes  # isinstance() believes __class__

        def __len__(self):
            return 0

    def scenario(lp):
        async def main():
            server, where = await _start("tcp", tmp_path, _echo, server_context(certs))
            reader, writer = await _open("tcp", where, client_context(certs))
            t = writer.transport
            got = [outcome(t.is_closing), outcome(t.get_write_buffer_size)]
            for arg in ("text", 7, None, [b"x"], b"", bytearray(), memoryview(b""),
                        memoryview(b"ab"), LooksLikeBytes(), bytearray(b"cd")):  # fmt: skip
                got.append(outcome(t.write, arg))
            got.append(await reader.readexactly(4))
            got.append(outcome(t.get_write_buffer_size))
            writer.close()
            got += [outcome(t.is_closing), outcome(t.write, b"late")]
            await writer.wait_closed()
            got += [outcome(t.is_closing), outcome(t.get_write_buffer_size)]
            server.close()
            await server.wait_closed()
            return got

        return run_bounded(lp, main())

    got = scenario(loop)
    assert got[0] == ("ok", False)
    assert got[2] == (TypeError, "data: expecting a bytes-like instance, got str")
    assert got == scenario(stock_loop)
