"""What subclasses, mocks and callbacks can observe of the stream
transport's per-connection code and of a server's accept loop.

goloop runs these in C (pybridge/stream_conn.c, accept.c) and takes
shortcuts where nothing can tell: these tests pin the cases where something
can (a subclass overriding a hook, mock.patch.object on the loop, a
protocol factory closing its server, deleted attributes), each run on the
stock loop and on goloop with the stock loop's result as the oracle.
"""

import asyncio
import gc
import os
import socket
import sys
import warnings
from unittest import mock

import pytest
from loop_support import run_bounded, stock_factory, waiting_data, with_loop

PY312 = sys.version_info >= (3, 12)


def transport_class(lp):
    """The loop's own stream transport class (asyncio's or goloop's)."""
    a, b = socket.socketpair()
    with b:
        a.setblocking(False)
        tr = lp._make_socket_transport(a, asyncio.Protocol())
        tr.close()
        lp.run_until_complete(asyncio.sleep(0))
    return type(tr)


def make_transport(lp, cls, protocol=None):
    """A transport of cls over one end of a socketpair; (transport, peer)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    return cls(lp, a, protocol or asyncio.Protocol()), b


def outcome_of(fn):
    try:
        return ("ok", fn())
    except Exception as exc:  # the oracle compares type and message
        return (type(exc).__name__, str(exc).replace("_SelectorSocketTransport", "T"))


def test_set_write_buffer_limits_override_is_called(loop):
    def scenario(lp):
        calls = []

        class T(transport_class(lp)):
            __slots__ = ()

            def _set_write_buffer_limits(self, high=None, low=None):
                calls.append((high, low))
                super()._set_write_buffer_limits(high=1000, low=10)

        tr, peer = make_transport(lp, T)
        with peer:
            limits = tr.get_write_buffer_limits()
            tr.close()
            lp.run_until_complete(asyncio.sleep(0))
        return calls, limits

    expected = with_loop(stock_factory, scenario)
    assert expected == ([(None, None)], (10, 1000))
    assert scenario(loop) == expected


def test_set_protocol_override_that_stores_nothing(loop):
    """asyncio's constructor then fails reading self._protocol."""

    def scenario(lp):
        class T(transport_class(lp)):
            def set_protocol(self, protocol):
                self.seen = protocol

        def build():
            tr, peer = make_transport(lp, T)
            peer.close()
            return tr.seen is not None

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            return outcome_of(build)

    expected = with_loop(stock_factory, scenario)
    assert expected == ("AttributeError", "'T' object has no attribute '_protocol'")
    assert scenario(loop) == expected


@pytest.mark.parametrize("step", ["eof", "connection_lost"])
def test_deleted_protocol_attribute(loop, step):
    def scenario(lp):
        tr, peer = make_transport(lp, transport_class(lp))
        with peer:
            lp.run_until_complete(asyncio.sleep(0))
            del tr._protocol
            if step == "eof":
                got = outcome_of(tr._read_ready__on_eof)
            else:
                got = outcome_of(lambda: tr._call_connection_lost(None))
            got = (got[0], got[1].replace(type(tr).__name__, "T"))
            if tr._sock is not None:
                tr._sock.close()
        return got

    expected = with_loop(stock_factory, scenario)
    assert expected == ("AttributeError", "'T' object has no attribute '_protocol'")
    assert scenario(loop) == expected


def test_loop_methods_patched_on_the_instance_see_the_calls(loop):
    """mock.patch.object(loop, ...) shadows the loop's methods: the
    transport's constructor and close() must go through the patches."""

    def scenario(lp):
        cls = transport_class(lp)
        with (
            mock.patch.object(lp, "call_soon", wraps=lp.call_soon) as call_soon,
            mock.patch.object(lp, "_remove_reader", wraps=lp._remove_reader) as remove_reader,
            mock.patch.object(lp, "_remove_writer", wraps=lp._remove_writer) as remove_writer,
        ):
            tr, peer = make_transport(lp, cls)
            in_init = call_soon.call_count
            tr.close()
            counts = (in_init, call_soon.call_count, remove_reader.call_count)
            counts += (remove_writer.call_count,)
        lp.run_until_complete(asyncio.sleep(0))
        peer.close()
        return counts

    expected = with_loop(stock_factory, scenario)
    assert expected == (2, 3, 1, 1)
    assert scenario(loop) == expected


class Keeper(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport


def test_factory_closing_its_server_stops_accepting(loop):
    """A protocol factory that closes its server (and opens another
    listener, which may get the old fd number): the accept loop must not
    go on accepting on that fd number."""

    def scenario(lp):
        contexts = []
        lp.set_exception_handler(lambda _lp, ctx: contexts.append(ctx))
        state = {}

        kept = []

        async def main():
            calls = []
            server = None

            def factory():
                calls.append(1)
                if len(calls) == 1:
                    server.close()
                    other = socket.create_server(("127.0.0.1", 0))
                    other.setblocking(False)
                    state["other"] = other
                    state["client"] = socket.create_connection(other.getsockname())
                proto = Keeper()
                kept.append(proto)
                return proto

            server = await lp.create_server(factory, "127.0.0.1", 0)
            first = socket.create_connection(server.sockets[0].getsockname())
            while not calls:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            other = state["other"]
            try:
                conn, _ = other.accept()
                conn.close()
                other_got_its_client = True
            except BlockingIOError:
                other_got_its_client = False
            first.close()
            state["client"].close()
            other.close()
            for proto in kept:  # 3.13's server.close() leaves clients open
                if hasattr(proto, "transport"):
                    proto.transport.close()
            await asyncio.sleep(0)
            return other_got_its_client, len(calls)

        # Server._attach asserts the server is open, so the transport of the
        # connection whose factory closed it is never finished (on both
        # loops); its __del__ then fails in Server._detach: not ours to see.
        hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
        try:
            result = run_bounded(lp, main())
            gc.collect()
        finally:
            sys.unraisablehook = hook
        errors = [type(c.get("exception")).__name__ for c in contexts]
        return result, errors

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == (True, 1)
    assert scenario(loop) == expected


def test_listener_of_another_family_takes_asyncios_path(loop):
    """A listening socket whose addresses goloop's C accept loop does not
    build (AF_VSOCK): the accept callback behaves as stock's."""
    try:
        probe = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        probe.bind((socket.VMADDR_CID_ANY, socket.VMADDR_PORT_ANY))
        probe.close()
    except (AttributeError, OSError) as exc:
        pytest.skip(f"AF_VSOCK listeners unavailable here: {exc}")

    def scenario(lp):
        with socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM) as lis:
            lis.bind((socket.VMADDR_CID_ANY, socket.VMADDR_PORT_ANY))
            lis.listen(8)
            lis.setblocking(False)
            # what the listener's reader callback runs (nothing pending)
            return outcome_of(lambda: lp._accept_connection(asyncio.Protocol, lis, None, None, 100))

    expected = with_loop(stock_factory, scenario)
    assert expected == ("ok", None)
    assert scenario(loop) == expected


@pytest.mark.skipif(not PY312, reason="asyncio checks the fd for a live transport from 3.12")
def test_accept_calls_factory_before_the_fd_check(loop):
    """3.12+: the protocol factory runs before _make_socket_transport finds
    a live transport on the accepted fd number (one whose socket was
    closed behind its back) and refuses it."""

    def scenario(lp):
        contexts = []
        lp.set_exception_handler(lambda _lp, ctx: contexts.append(ctx))

        async def main():
            calls = []

            def factory():
                calls.append(1)
                return asyncio.Protocol()

            server = await lp.create_server(factory, "127.0.0.1", 0)
            a, b = socket.socketpair()
            a.setblocking(False)
            tr, _ = await lp.create_connection(asyncio.Protocol, sock=a)
            client = socket.socket()
            os.close(a.detach())  # the transport still holds the fd number
            client.connect(server.sockets[0].getsockname())
            await asyncio.sleep(0.1)
            client.close()
            b.close()
            server.close()
            return len(calls), tr.is_closing()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            result = run_bounded(lp, main())
        return result, [type(c.get("exception")).__name__ for c in contexts]

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == (1, False)
    assert scenario(loop) == expected


def test_transport_without_a_loop_like_stock(loop):
    """asyncio's _FlowControlMixin asserts it was given a loop."""

    def scenario(lp):
        cls = transport_class(lp)
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            return outcome_of(lambda: cls(None, a, asyncio.Protocol()))

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == ("AssertionError" if __debug__ else "AttributeError")
    assert scenario(loop) == expected


def test_make_socket_transport_patched_on_the_instance_sees_accepts(loop):
    def scenario(lp):
        async def main():
            made = lp.create_future()

            class P(asyncio.Protocol):
                def connection_made(self, transport):
                    self.transport = transport
                    made.set_result(self)

            server = await lp.create_server(P, "127.0.0.1", 0)
            factory = lp._make_socket_transport
            with mock.patch.object(lp, "_make_socket_transport", wraps=factory) as patched:
                client = socket.create_connection(server.sockets[0].getsockname())
                proto = await made
            proto.transport.close()
            client.close()
            server.close()
            await asyncio.sleep(0)
            return patched.call_count

        return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected == 1
    assert scenario(loop) == expected


def test_socket_closed_under_a_live_transport(loop):
    """The user closes the socket object the transport was made with and
    its fd number goes to a new socket: a write must not reach that socket
    (stock: EBADF from the closed socket, then connection_lost)."""

    def scenario(lp):
        async def main():
            a, b = socket.socketpair()
            a.setblocking(False)
            tr, proto = await lp.create_connection(Keeper, sock=a)
            lost = lp.create_future()
            proto.connection_lost = lost.set_result
            fd = a.fileno()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                a.close()
            x, y = socket.socketpair()
            with b, x, y:
                assert x.fileno() == fd or y.fileno() == fd
                tr.write(b"secret")
                exc = await lost
                leaked = waiting_data(x, y)
                return type(exc).__name__, getattr(exc, "errno", None), leaked

        contexts = []
        lp.set_exception_handler(lambda _lp, ctx: contexts.append(ctx))
        return run_bounded(lp, main()), len(contexts)

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == ("OSError", 9, [])
    assert scenario(loop) == expected


@pytest.mark.parametrize("how", ["del _protocol", "_sock = None", "del _sock"])
def test_data_arriving_for_a_gutted_transport_is_reported(loop, how):
    """Stock reports the AttributeError and stops reading; goloop once left
    the fd readable and spun. Reading _sock after `del` gives asyncio's
    class default, None."""

    def scenario(lp):
        contexts = []
        lp.set_exception_handler(lambda _lp, ctx: contexts.append(ctx))

        async def main():
            a, b = socket.socketpair()
            a.setblocking(False)
            with b:
                tr = lp._make_socket_transport(a, asyncio.Protocol())
                await asyncio.sleep(0)
                if how == "del _protocol":
                    del tr._protocol
                elif how == "_sock = None":
                    tr._sock = None
                else:
                    del tr._sock
                    assert tr._sock is None
                b.send(b"hello")
                for _ in range(20):
                    await asyncio.sleep(0.005)
                if a.fileno() >= 0:
                    a.close()
            reports = sorted({type(c.get("exception")).__name__ for c in contexts})
            return reports, tr.is_closing()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            return run_bounded(lp, main())

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == ["AttributeError"]
    assert scenario(loop) == expected
