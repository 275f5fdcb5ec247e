"""add_reader / add_writer / remove_reader / remove_writer."""

import asyncio
import os
import socket
import tempfile

import pytest
from loop_support import outcome, stock_factory, with_loop


@pytest.fixture
def sockpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    fds = [r, w]
    yield fds
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def wait_for(loop, fut, timeout=10):
    """Run until fut is done; the timeout only turns a hang into a failure."""
    return loop.run_until_complete(asyncio.wait_for(fut, timeout))


# ---------------------------------------------------------------- readiness


def test_reader_on_socketpair(loop, sockpair):
    a, b = sockpair
    fut = loop.create_future()

    def on_readable(sock, tag):
        data = sock.recv(100)
        loop.remove_reader(sock)
        fut.set_result((tag, data))

    loop.add_reader(a, on_readable, a, "tag")
    loop.call_later(0.01, b.send, b"hello")
    assert wait_for(loop, fut) == ("tag", b"hello")


def test_reader_not_called_without_data(loop, sockpair):
    a, _ = sockpair
    seen = []
    loop.add_reader(a.fileno(), seen.append, "readable")
    loop.run_until_complete(asyncio.sleep(0.02))
    assert seen == []
    assert loop.remove_reader(a.fileno()) is True


def test_writer_on_socketpair(loop, sockpair):
    a, _ = sockpair
    fut = loop.create_future()

    def on_writable():
        loop.remove_writer(a)
        fut.set_result(a.send(b"x"))

    loop.add_writer(a, on_writable)
    assert wait_for(loop, fut) == 1


def test_reader_on_pipe_and_eof(loop, pipe):
    r, w = pipe
    chunks = []
    done = loop.create_future()

    def on_readable():
        data = os.read(r, 100)
        chunks.append(data)
        if not data:
            loop.remove_reader(r)
            done.set_result(None)

    loop.add_reader(r, on_readable)
    loop.call_soon(os.write, w, b"abc")
    loop.call_later(0.01, os.close, w)
    pipe.remove(w)
    wait_for(loop, done)
    assert b"".join(chunks) == b"abc"
    assert chunks[-1] == b""


def test_writer_on_pipe(loop, pipe):
    r, w = pipe
    fut = loop.create_future()

    def on_writable():
        loop.remove_writer(w)
        fut.set_result(os.write(w, b"data"))

    loop.add_writer(w, on_writable)
    assert wait_for(loop, fut) == 4
    assert os.read(r, 10) == b"data"


def test_writer_waits_until_pipe_drains(loop, pipe):
    r, w = pipe
    try:
        while True:
            os.write(w, b"x" * 65536)
    except BlockingIOError:
        pass
    seen = []
    loop.add_writer(w, seen.append, "writable")
    loop.run_until_complete(asyncio.sleep(0.02))
    assert seen == []  # full pipe: not writable
    fut = loop.create_future()
    loop.add_writer(w, lambda: fut.done() or fut.set_result("writable"))

    def drain():
        while True:
            try:
                if not os.read(r, 1 << 20):
                    break
            except BlockingIOError:
                break

    loop.call_soon(drain)
    assert wait_for(loop, fut) == "writable"
    assert loop.remove_writer(w) is True


def test_reader_and_writer_on_same_fd(loop):
    def scenario(lp):
        a, b = socket.socketpair()
        try:
            seen = []
            b.send(b"x")

            def on_read():
                seen.append("read")
                a.recv(10)
                lp.remove_reader(a)

            def on_write():
                seen.append("write")
                lp.remove_writer(a)

            lp.add_reader(a, on_read)
            lp.add_writer(a, on_write)
            lp.run_until_complete(asyncio.sleep(0.01))
            return seen
        finally:
            a.close()
            b.close()

    got = scenario(loop)
    assert sorted(got) == ["read", "write"]
    assert got == with_loop(stock_factory, scenario)


def test_remove_writer_keeps_reader(loop, sockpair):
    a, b = sockpair
    seen = []
    loop.add_reader(a, lambda: seen.append(("read", a.recv(10))))
    loop.add_writer(a, seen.append, "write")
    assert loop.remove_writer(a) is True
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == []  # writable, but the writer is gone
    b.send(b"data")
    loop.run_until_complete(asyncio.sleep(0.02))
    assert seen == [("read", b"data")]
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_level_triggered_like_stock(loop):
    def scenario(lp):
        a, b = socket.socketpair()
        try:
            b.send(b"xyz")
            count = []

            def on_read():
                count.append(1)
                if len(count) == 3:
                    a.recv(10)  # drain: stops being readable
                    lp.call_later(0.02, lp.stop)

            lp.add_reader(a, on_read)
            lp.run_forever()
            lp.remove_reader(a)
            return len(count)
        finally:
            a.close()
            b.close()

    got = scenario(loop)
    assert got == 3
    assert got == with_loop(stock_factory, scenario)


# ---------------------------------------------------------------- replace / remove


def test_replacing_reader_only_new_one_runs(loop, sockpair):
    a, b = sockpair
    seen = []
    loop.add_reader(a, seen.append, "old")
    loop.add_reader(a, lambda: (seen.append("new"), a.recv(10), loop.remove_reader(a)))
    b.send(b"x")
    loop.run_until_complete(asyncio.sleep(0.02))
    assert seen == ["new"]


def test_replacing_a_queued_handle_cancels_it_like_stock(loop):
    """fd readable and writable: the reader (dispatched first) replaces the
    writer whose old handle is already queued for this iteration."""

    def scenario(lp):
        a, b = socket.socketpair()
        try:
            seen = []
            b.send(b"x")

            def new_writer():
                seen.append("w2")
                lp.remove_writer(a)

            def reader():
                seen.append("r1")
                a.recv(10)
                lp.remove_reader(a)
                lp.add_writer(a, new_writer)

            lp.add_reader(a, reader)
            lp.add_writer(a, seen.append, "w1")
            lp.run_until_complete(asyncio.sleep(0.02))
            return seen
        finally:
            a.close()
            b.close()

    expected = with_loop(stock_factory, scenario)
    assert expected == ["r1", "w2"]
    assert scenario(loop) == expected


def test_remove_returns_like_stock(loop, sockpair):
    a, _ = sockpair

    def scenario(lp):
        return [
            lp.remove_reader(a),
            lp.remove_writer(a),
            lp.add_reader(a, print),
            lp.add_writer(a.fileno(), print),
            lp.remove_reader(a.fileno()),  # int and socket name the same fd
            lp.remove_reader(a),
            lp.remove_writer(a),
            lp.remove_writer(a),
        ]

    expected = with_loop(stock_factory, scenario)
    assert expected == [False, False, None, None, True, False, True, False]
    assert scenario(loop) == expected


def test_removed_reader_not_called(loop, sockpair):
    a, b = sockpair
    seen = []
    loop.add_reader(a, seen.append, "reader")
    b.send(b"x")
    assert loop.remove_reader(a)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert seen == []


def test_reader_removed_by_earlier_callback_same_iteration(loop):
    def scenario(lp):
        socks = [socket.socketpair() for _ in range(2)]
        try:
            seen = []
            (a1, b1), (a2, b2) = socks

            def make(me, other, tag):
                def cb():
                    seen.append(tag)
                    me.recv(10)
                    lp.remove_reader(me)
                    lp.remove_reader(other)

                return cb

            lp.add_reader(a1, make(a1, a2, "one"))
            lp.add_reader(a2, make(a2, a1, "two"))
            b1.send(b"x")
            b2.send(b"x")
            lp.run_until_complete(asyncio.sleep(0.02))
            return seen
        finally:
            for s in socks:
                s[0].close()
                s[1].close()

    # Whichever fd is dispatched first removes the other reader.
    assert len(scenario(loop)) == 1
    assert len(with_loop(stock_factory, scenario)) == 1


# ---------------------------------------------------------------- invalid fds


@pytest.mark.parametrize(
    "fileobj",
    [
        pytest.param(-1, id="minus-one"),
        pytest.param(-100, id="negative"),
        pytest.param(object(), id="object"),
        pytest.param("0", id="str"),
        pytest.param(1.5, id="float"),
        pytest.param(None, id="None"),
    ],
)
@pytest.mark.parametrize("method", ["add_reader", "add_writer", "remove_reader", "remove_writer"])
def test_invalid_fd_like_stock(loop, stock_loop, method, fileobj):
    args = (fileobj, print) if method.startswith("add") else (fileobj,)
    expected = outcome(getattr(stock_loop, method), *args)
    assert expected[0] is ValueError
    assert outcome(getattr(loop, method), *args) == expected


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_fileno_raising_like_stock(loop, stock_loop, method):
    class Bad:
        def fileno(self):
            raise ValueError("closed file")

    bad = Bad()
    expected = outcome(getattr(stock_loop, method), bad, print)
    assert outcome(getattr(loop, method), bad, print) == expected


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_huge_fd_like_stock(loop, stock_loop, method):
    expected = outcome(getattr(stock_loop, method), 2**31, print)
    assert outcome(getattr(loop, method), 2**31, print)[0] is expected[0]


def _closed_fd():
    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    b.close()
    return fd


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_closed_fd_like_stock(loop, stock_loop, method):
    expected = outcome(getattr(stock_loop, method), _closed_fd(), print)
    assert issubclass(expected[0], OSError)
    got = outcome(getattr(loop, method), _closed_fd(), print)
    assert got[0] is expected[0]
    # Nothing was left registered.
    assert loop.remove_reader(_closed_fd()) is stock_loop.remove_reader(_closed_fd()) is False
    assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_regular_file_like_stock(loop, stock_loop, method):
    with tempfile.TemporaryFile() as f:
        expected = outcome(getattr(stock_loop, method), f, print)
        got = outcome(getattr(loop, method), f, print)
        assert expected[0] is PermissionError
        assert got == expected
        # Nothing was left registered.
        assert loop.remove_reader(f) is stock_loop.remove_reader(f)
        assert loop.remove_writer(f) is stock_loop.remove_writer(f)
    # And the loop still runs.
    assert loop.run_until_complete(asyncio.sleep(0, "ok")) == "ok"


# ---------------------------------------------------------------- closed while registered


def test_fd_closed_while_registered_does_not_crash(loop):
    def scenario(lp):
        a, b = socket.socketpair()
        seen = []
        lp.add_reader(a.fileno(), seen.append, "reader")
        fd = a.fileno()
        a.close()
        b.close()
        lp.run_until_complete(asyncio.sleep(0.01))
        removed = (outcome(lp.remove_reader, fd), outcome(lp.remove_reader, fd))
        lp.run_until_complete(asyncio.sleep(0.005))
        return seen, removed, lp.run_until_complete(asyncio.sleep(0, "alive"))

    expected = with_loop(stock_factory, scenario)
    assert expected == ([], (("ok", True), ("ok", False)), "alive")
    assert scenario(loop) == expected


def test_remove_one_direction_of_closed_fd_like_stock(loop):
    def scenario(lp):
        a, b = socket.socketpair()
        lp.add_reader(a.fileno(), print)
        lp.add_writer(a.fileno(), print)
        fd = a.fileno()
        a.close()
        b.close()
        first = outcome(lp.remove_reader, fd)
        rest = (outcome(lp.remove_writer, fd), outcome(lp.remove_reader, fd))
        return first, rest, lp.run_until_complete(asyncio.sleep(0, "alive"))

    expected = with_loop(stock_factory, scenario)
    assert expected[0][0] is OSError
    assert scenario(loop) == expected


def test_peer_closed_while_registered(loop, sockpair):
    a, b = sockpair
    fut = loop.create_future()

    def on_readable():
        data = a.recv(10)
        loop.remove_reader(a)
        fut.set_result(data)

    loop.add_reader(a, on_readable)
    loop.call_soon(b.close)
    assert wait_for(loop, fut) == b""


def test_failed_modify_on_closed_fd_like_stock(loop):
    def scenario(lp):
        a, b = socket.socketpair()
        fd = a.fileno()
        lp.add_reader(fd, print)
        a.close()
        b.close()
        result = outcome(lp.add_writer, fd, print)
        return result[0], lp.remove_reader(fd), lp.remove_writer(fd)

    expected = with_loop(stock_factory, scenario)
    assert expected[0] is OSError
    assert scenario(loop) == expected


# ---------------------------------------------------------------- many fds


def test_many_fds_all_dispatched(loop):
    n = 300  # more than one batch of events
    pairs = [socket.socketpair() for _ in range(n)]
    try:
        seen = set()
        done = loop.create_future()

        def on_readable(i, sock):
            assert sock.recv(10) == b"%d" % i
            loop.remove_reader(sock)
            seen.add(i)
            if len(seen) == n and not done.done():
                done.set_result(None)

        for i, (a, b) in enumerate(pairs):
            a.setblocking(False)
            loop.add_reader(a, on_readable, i, a)
            b.send(b"%d" % i)
        wait_for(loop, done)
        assert seen == set(range(n))
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_many_writers_all_dispatched(loop):
    n = 300
    pairs = [socket.socketpair() for _ in range(n)]
    try:
        seen = []
        done = loop.create_future()

        def on_writable(i, sock):
            loop.remove_writer(sock)
            seen.append(i)
            if len(seen) == n:
                done.set_result(None)

        for i, (a, _) in enumerate(pairs):
            loop.add_writer(a, on_writable, i, a)
        wait_for(loop, done)
        assert sorted(seen) == list(range(n))
    finally:
        for a, b in pairs:
            a.close()
            b.close()


# ---------------------------------------------------------------- errors in I/O callbacks


def test_reader_exception_goes_to_handler_like_stock(loop):
    def scenario(lp):
        a, b = socket.socketpair()
        try:
            contexts = []
            calls = []
            lp.set_exception_handler(lambda _, ctx: contexts.append(ctx))

            def on_read():
                calls.append(a.recv(1))
                if len(calls) == 2:
                    lp.remove_reader(a)
                raise ValueError("reader failed")

            lp.add_reader(a, on_read)
            b.send(b"xy")
            lp.run_until_complete(asyncio.sleep(0.02))
            return calls, [
                (sorted(c), c["message"].split(" at ")[0], type(c["exception"]).__name__)
                for c in contexts
            ]
        finally:
            a.close()
            b.close()

    expected = with_loop(stock_factory, scenario)
    assert expected[0] == [b"x", b"y"]  # the reader stays registered after raising
    assert scenario(loop) == expected


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_reader_propagates(loop, sockpair, exc_type):
    a, b = sockpair

    def on_read():
        a.recv(10)
        raise exc_type("from reader")

    loop.add_reader(a, on_read)
    b.send(b"x")
    with pytest.raises(exc_type, match="from reader"):
        loop.run_until_complete(asyncio.sleep(10))
    assert not loop.is_running()
    assert loop.remove_reader(a) is True
    assert loop.run_until_complete(asyncio.sleep(0, "usable")) == "usable"
