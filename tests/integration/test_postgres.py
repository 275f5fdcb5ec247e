"""asyncpg and psycopg (async) on each loop against a real PostgreSQL
(started once per session by conftest.py), over its Unix socket and TCP."""

import asyncio

import pytest
from conftest import run

asyncpg = pytest.importorskip("asyncpg")
psycopg = pytest.importorskip("psycopg")

VIA = ("unix", "tcp", "localhost")


@pytest.mark.parametrize("via", VIA)
def test_asyncpg(loop_name, via, postgres):
    dsn = postgres.dsn(via)

    async def main():
        out = {}
        conn = await asyncpg.connect(dsn)
        other = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, name text, data bytea)")
            rows = [(i, f"name {i}", bytes([i % 256]) * (i % 50)) for i in range(5000)]
            out["copy"] = await conn.copy_records_to_table("t", records=rows)
            out["count"] = await conn.fetchval("SELECT count(*) FROM t")
            stmt = await conn.prepare("SELECT name, data FROM t WHERE id = $1")
            out["prepared"] = [tuple(await stmt.fetchrow(i)) for i in (0, 7, 4999)]
            async with conn.transaction():
                out["cursor"] = [r["id"] async for r in conn.cursor("SELECT id FROM t ORDER BY id")]
            out["cursor"] = out["cursor"] == list(range(5000))
            out["series"] = await conn.fetchval("SELECT sum(x) FROM generate_series(1, 200000) x")
            big = await conn.fetch("SELECT id, name, data FROM t ORDER BY id")
            out["fetch_all"] = [tuple(r) for r in big] == rows
            try:
                async with conn.transaction():
                    await conn.execute("INSERT INTO t VALUES (5000, 'new', NULL)")
                    await conn.execute("INSERT INTO t VALUES (1, 'dup', NULL)")
            except asyncpg.UniqueViolationError as exc:
                out["unique"] = (exc.sqlstate, exc.constraint_name)
            out["rolled_back"] = await conn.fetchval("SELECT count(*) FROM t WHERE id = 5000")
            try:
                await conn.fetch("SELECT pg_sleep(10)", timeout=0.3)
            except Exception as exc:
                out["timeout"] = type(exc)
            out["after_timeout"] = await conn.fetchval("SELECT 41 + 1")

            got = asyncio.get_running_loop().create_future()
            await conn.add_listener("chan", lambda *args: got.set_result(args[2:]))
            await other.execute("NOTIFY chan, 'payload ü'")
            out["notify"] = await got

            pool = await asyncpg.create_pool(dsn, min_size=2, max_size=5)
            try:
                out["pool"] = await asyncio.gather(
                    *(pool.fetchval("SELECT $1::int FROM pg_sleep(0.05)", i) for i in range(25))
                )
            finally:
                await pool.close()
        finally:
            await other.close()
            await conn.close()
        return out

    out = run(loop_name, main, timeout=60)
    assert out == {
        "copy": "COPY 5000",
        "count": 5000,
        "prepared": [("name 0", b""), ("name 7", b"\x07" * 7), ("name 4999", b"\x87" * 49)],
        "cursor": True,
        "series": 20000100000,
        "fetch_all": True,
        "unique": ("23505", "t_pkey"),
        "rolled_back": 0,
        "timeout": TimeoutError,
        "after_timeout": 42,
        "notify": ("chan", "payload ü"),
        "pool": list(range(25)),
    }


@pytest.mark.parametrize("via", VIA)
def test_psycopg_async(loop_name, via, postgres):
    dsn = postgres.dsn(via)
    rows = [(i, f"row {i}") for i in range(5000)]

    async def main():
        out = {}
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        other = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            async with conn.cursor() as cur:
                await cur.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, name text)")
                async with cur.copy("COPY t (id, name) FROM STDIN") as copy:
                    for row in rows:
                        await copy.write_row(row)
                await cur.executemany(
                    "INSERT INTO t VALUES (%s, %s)", [(i, f"many {i}") for i in range(5000, 5100)]
                )
                await cur.execute("SELECT count(*), max(id) FROM t")
                out["count"] = await cur.fetchone()
                chunks = []
                async with cur.copy("COPY (SELECT id, name FROM t ORDER BY id) TO STDOUT") as copy:
                    async for data in copy:
                        chunks.append(bytes(data))
                out["copy_out"] = b"".join(chunks).count(b"\n")
                await cur.execute("SELECT id, name FROM t WHERE id < 5000 ORDER BY id")
                out["fetchall"] = await cur.fetchall() == rows
                async with conn.pipeline():
                    for i in range(50):
                        await cur.execute("SELECT %s::int * 2", (i,))
                    await cur.execute("SELECT 'piped'")
                out["pipeline"] = await cur.fetchone()
                try:
                    async with conn.transaction():
                        await cur.execute("INSERT INTO t VALUES (1, 'dup')")
                except psycopg.errors.UniqueViolation as exc:
                    out["unique"] = (exc.sqlstate, exc.diag.constraint_name)

                async def sleeper():
                    async with conn.cursor() as c:
                        await c.execute("SELECT pg_sleep(10)")

                task = asyncio.ensure_future(sleeper())
                # cancel once the server runs it (a cancel that arrives
                # first cancels nothing)
                running = (
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
                    " AND state = 'active' AND query = 'SELECT pg_sleep(10)'"
                )
                pid = (conn.info.backend_pid,)
                while (await (await other.execute(running, pid)).fetchone())[0] == 0:
                    await asyncio.sleep(0.01)
                await conn.cancel_safe()
                try:
                    await task
                except psycopg.errors.QueryCanceled as exc:
                    out["cancel"] = exc.sqlstate
                await cur.execute("SELECT 6 * 7")
                out["after_cancel"] = await cur.fetchone()

            await conn.execute("LISTEN chan")
            await other.execute("NOTIFY chan, 'hello psycopg'")
            notes = [(n.channel, n.payload) async for n in conn.notifies(timeout=5, stop_after=1)]
            out["notify"] = notes
        finally:
            await other.close()
            await conn.close()
        return out

    out = run(loop_name, main, timeout=60)
    assert out == {
        "count": (5100, 5099),
        "copy_out": 5100,
        "fetchall": True,
        "pipeline": ("piped",),
        "unique": ("23505", "t_pkey"),
        "cancel": "57014",
        "after_cancel": (42,),
        "notify": [("chan", "hello psycopg")],
    }
