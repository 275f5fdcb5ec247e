"""Unix datagram echo: CPU per 1 KiB round trip, for each loop.

An asyncio.DatagramProtocol echo endpoint on an AF_UNIX datagram socket
(create_datagram_endpoint, transport.sendto(data, addr) in
datagram_received) and a client on the same loop (sock_sendto-free: a
plain non-blocking socket, sendto + loop.sock_recv). Client and server
share the process, so the figure is the CPU of one whole round trip:
kernel work for two datagrams plus each loop's receive, protocol call and
reply. Each loop runs in a fresh process; median of --reps.

    python benchmarks/net/unix_dgram.py [--loops asyncio,uvloop,rloop,goloop]
        [--count 50000] [--reps 3]

Writes benchmarks/results/unix_dgram.md.
"""

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import netcommon as nc

SIZE = 1024


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


async def round_trips(count):
    """CPU seconds per round trip over count echoes (every byte checked)."""
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        server_path, client_path = os.path.join(tmp, "s"), os.path.join(tmp, "c")
        transport, _ = await loop.create_datagram_endpoint(
            Echo, local_addr=server_path, family=socket.AF_UNIX
        )
        client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            client.bind(client_path)
            client.setblocking(False)
            message = os.urandom(SIZE)
            start = time.process_time()
            for _ in range(count):
                client.sendto(message, server_path)
                if await loop.sock_recv(client, 2 * SIZE) != message:
                    raise AssertionError("echo mismatch")
            return (time.process_time() - start) / count
        finally:
            client.close()
            transport.close()


def child(name, count):
    """Measure one loop in this process; prints the µs per round trip."""
    loop = nc.make_loop(name)
    try:
        print(f"{loop.run_until_complete(round_trips(count)) * 1e6:.3f}")
    except (NotImplementedError, TypeError, ValueError, OSError) as exc:
        print(f"n/a {type(exc).__name__}: {exc}")  # the loop lacks the API
    finally:
        loop.close()


def measure(name, count, reps):
    """Median µs per round trip over reps fresh processes, or a reason."""
    results = []
    for _ in range(reps):
        try:
            out = subprocess.run(
                [sys.executable, __file__, "--child", name, "--count", str(count)],
                capture_output=True,
                text=True,
                env=nc.python_env(),
                check=False,
                timeout=max(20, count / 2000),
            )
        except subprocess.TimeoutExpired:
            return None, "no echo came back (timed out)"
        text = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if out.returncode != 0 or text.startswith("n/a"):
            why = text.removeprefix("n/a ") or out.stderr.strip().splitlines()[-1]
            return None, why[:80]
        results.append(float(text))
    return statistics.median(results), None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loops", default=",".join(nc.LOOPS))
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.count)
    rows = {name: measure(name, args.count, args.reps) for name in args.loops.split(",")}
    # uvloop when it can (0.23 takes no Unix local_addr here), else stock
    base_name = next((n for n in ("uvloop", "asyncio") if rows.get(n, (None,))[0]), None)
    base = rows[base_name][0] if base_name else None
    lines = [
        "## Unix datagram echo: CPU µs per 1 KiB round trip (lower is better)",
        "",
        f"Client and echo endpoint on one loop in one process; median of {args.reps} "
        f"fresh processes of {args.count} round trips; `python benchmarks/net/unix_dgram.py`.",
        "",
        f"| loop | µs / round trip | x/{base_name} |",
        "|---|---:|---:|",
    ]
    for name, (value, why) in rows.items():
        if value is None:
            lines.append(f"| {name} | n/a ({why}) | — |")
        else:
            ratio = f"{value / base:.2f}" if base else "—"
            lines.append(f"| {name} | {value:.1f} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    nc.write_file(nc.RESULTS / "unix_dgram.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
