"""redis-py's asyncio client on each loop against a real redis-server
(started once per session by conftest.py), over TCP and its Unix socket."""

import asyncio
import os

import pytest
from conftest import run

redis_asyncio = pytest.importorskip("redis.asyncio")


@pytest.mark.parametrize("via", ["tcp", "unix", "localhost"])
def test_redis(loop_name, via, redis_server):
    if via != "unix":  # (localhost: resolved through the loop's getaddrinfo)
        url = f"redis://{'127.0.0.1' if via == 'tcp' else via}:{redis_server.port}"
    else:
        url = f"unix://{redis_server.unixsocket}"
    prefix = f"{loop_name}:{via}:"
    big = os.urandom(1 << 20)

    async def main():
        out = {}
        # 300 concurrent commands wait for 8 connections
        pool = redis_asyncio.BlockingConnectionPool.from_url(url, max_connections=8, timeout=10)
        r = redis_asyncio.Redis(connection_pool=pool)
        other = redis_asyncio.Redis.from_url(url)
        try:
            await r.delete(*[prefix + k for k in ("big", "n", "list", "h")])
            await r.set(prefix + "big", big)
            out["big"] = await r.get(prefix + "big") == big
            await asyncio.gather(*(r.incr(prefix + "n") for _ in range(300)))
            out["incr"] = int(await r.get(prefix + "n"))
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(prefix + "h", mapping={"a": "1", "b": "2"})
                pipe.hincrby(prefix + "h", "a", 41)
                pipe.hgetall(prefix + "h")
                out["pipeline"] = await pipe.execute()
            out["blpop_timeout"] = await r.blpop([prefix + "list"], timeout=0.2)

            async def push_later():
                await asyncio.sleep(0.1)
                await other.rpush(prefix + "list", "woken")

            pusher = asyncio.ensure_future(push_later())
            out["blpop"] = await r.blpop([prefix + "list"], timeout=5)
            await pusher

            pubsub = r.pubsub()
            await pubsub.subscribe(prefix + "chan")
            first = await pubsub.get_message(timeout=5)
            out["subscribed"] = (first["type"], first["data"])
            out["receivers"] = await other.publish(prefix + "chan", "message ü")
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            out["message"] = (msg["channel"], msg["data"])
            out["nothing"] = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            await pubsub.aclose()

            await r.mset({f"{prefix}k{i}": i for i in range(500)})
            keys = [k async for k in r.scan_iter(match=prefix + "k*", count=50)]
            out["scan"] = sorted(int(k.rsplit(b"k", 1)[1]) for k in keys)
            await r.delete(*keys)
        finally:
            await other.aclose()
            await r.aclose()
            await pool.aclose()
        return out

    out = run(loop_name, main)
    assert out == {
        "big": True,
        "incr": 300,
        "pipeline": [2, 42, {b"a": b"42", b"b": b"2"}],
        "blpop_timeout": None,
        "blpop": ((prefix + "list").encode(), b"woken"),
        "subscribed": ("subscribe", 1),
        "receivers": 1,
        "message": ((prefix + "chan").encode(), "message ü".encode()),
        "nothing": None,
        "scan": list(range(500)),
    }
