"""anyio.run(..., backend_options={"loop_factory": ...}) on each loop:
task groups, cancel scopes, threads, TCP streams, processes."""

import asyncio
import sys
import threading

import pytest
from conftest import FACTORIES, LOOP_TYPE

anyio = pytest.importorskip("anyio")


def test_anyio_run(loop_name):
    async def main():
        out = {}
        cls = type(asyncio.get_running_loop())
        out["loop"] = f"{cls.__module__}.".startswith(LOOP_TYPE[loop_name])

        finished = []

        async def worker(i):
            await anyio.sleep(0.01 * i)
            if i == 2:
                raise ValueError("two")
            await anyio.sleep(5)
            finished.append(i)

        try:
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(worker, i)
        except* ValueError as group:
            out["group"] = [str(e) for e in group.exceptions]
        out["finished"] = finished

        with anyio.move_on_after(0.05) as scope:
            await anyio.sleep(5)
        out["move_on"] = scope.cancelled_caught
        try:
            with anyio.fail_after(0.05):
                await anyio.sleep(5)
        except TimeoutError:
            out["fail_after"] = True

        main_thread = threading.get_ident()
        out["to_thread"] = await anyio.to_thread.run_sync(threading.get_ident) != main_thread
        out["from_thread"] = await anyio.to_thread.run_sync(
            lambda: (
                anyio.from_thread.run(
                    anyio.sleep,
                    0,
                )
                or "back"
            )
        )

        payload = bytes(range(256)) * 400

        async def handle(stream):
            async with stream:
                data = b""
                while len(data) < len(payload):
                    data += await stream.receive()
                await stream.send(data[::-1])

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                await client.send(payload)
                got = b""
                while len(got) < len(payload):
                    got += await client.receive()
            out["tcp"] = got == payload[::-1]
            tg.cancel_scope.cancel()
        await listener.aclose()

        send, receive = anyio.create_memory_object_stream(5)
        async with anyio.create_task_group() as tg:

            async def produce():
                async with send:
                    for i in range(20):
                        await send.send(i)

            tg.start_soon(produce)
            async with receive:
                out["memory"] = [i async for i in receive]

        result = await anyio.run_process([sys.executable, "-c", "print('from child')"])
        out["process"] = (result.returncode, result.stdout)
        return out

    out = anyio.run(main, backend="asyncio", backend_options={"loop_factory": FACTORIES[loop_name]})
    assert out == {
        "loop": True,
        "group": ["two"],
        "finished": [],
        "move_on": True,
        "fail_after": True,
        "to_thread": True,
        "from_thread": "back",
        "tcp": True,
        "memory": list(range(20)),
        "process": (0, b"from child\n"),
    }
