"""Smoke test of an installed goloop: run it with the interpreter to check.

    python tools/smoke.py [--expect-go go1.X.Y]

Checks that goloop imports from an installation (not from this source
tree), that `python -m goloop info` runs and reports the Go engine, and that
a goloop loop runs timers in order and a TCP echo server and client. Prints
"smoke ok" and exits 0, or fails with a traceback.

`python -m goloop info` runs in this process (runpy, as -m does), because
under qemu-user without binfmt_misc a child interpreter cannot be exec'd.
"""

import argparse
import asyncio
import contextlib
import io
import os
import runpy
import sys

import goloop

SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def exercise():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, goloop.Loop), type(loop)

    fired = []
    for delay in (0.03, 0.01, 0.02):
        loop.call_later(delay, fired.append, delay)
    await asyncio.sleep(0.05)
    assert fired == [0.01, 0.02, 0.03], fired

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = bytes(range(256)) * 4096  # 1 MiB: several writes, flow control
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    received = await asyncio.wait_for(reader.read(), 30)
    assert received == payload, (len(received), len(payload))
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--expect-go", help="the Go release the extension must report")
    args = parser.parse_args()

    installed = os.path.dirname(os.path.abspath(goloop.__file__))
    assert os.path.dirname(installed) != SOURCE, installed

    out = io.StringIO()
    argv = sys.argv
    sys.argv = ["goloop", "info"]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_module("goloop", run_name="__main__", alter_sys=True)
    finally:
        sys.argv = argv
    print(out.getvalue(), end="")
    fields = {k: v.strip() for k, v in (line.split(":", 1) for line in out.getvalue().splitlines())}
    assert fields["goloop"] == goloop.__version__, fields
    assert fields["engine"] == "Go", fields
    assert fields["extension"].startswith(installed + os.sep), fields
    if args.expect_go:
        assert fields["go"] == args.expect_go, (fields["go"], args.expect_go)

    goloop.run(exercise())
    print("smoke ok")


if __name__ == "__main__":
    main()
