"""goloop's loop statistics as Prometheus metrics, from a running uvicorn app.

Run (from the repository root):

    uvicorn examples.prometheus_uvicorn:app --loop goloop:new_event_loop

then point Prometheus at http://127.0.0.1:8000/metrics, or look yourself:

    curl -s http://127.0.0.1:8000/metrics

The app is plain ASGI (no framework): ``/metrics`` renders
``goloop.stats()`` of the loop serving the request in Prometheus's text
exposition format (version 0.0.4); any other path answers "hello". At
startup (ASGI lifespan) it turns on ``goloop.track_slow_callbacks`` with
asyncio's own slow-callback threshold, 0.1 s, so the slowest callbacks
are exported with where their code is.

No prometheus_client: the format is a few lines of text, and the snapshot
is already a set of totals and gauges, which is what the client library's
custom collectors would have to rebuild. To merge these into an app that
already uses prometheus_client, serve ``render(goloop.stats(loop))`` from
its own route, or wrap the same samples in a custom collector.

Each uvicorn worker process runs its own loop: with ``--workers N`` a
scrape sees the worker that answered it. Counters are totals since the
loop started (Prometheus's rate() turns them into rates).
"""

import asyncio

import goloop

SLOW_CALLBACK_THRESHOLD = 0.1  # seconds: asyncio's slow_callback_duration

# (LoopStats field, metric name, type, help); counters end in _total.
METRICS = (
    ("iterations", "goloop_iterations_total", "counter", "Event loop iterations."),
    ("callbacks", "goloop_callbacks_total", "counter", "Callbacks run (task steps included)."),
    ("poll_time", "goloop_poll_seconds_total", "counter", "Seconds spent waiting for I/O."),
    (
        "busy_time",
        "goloop_busy_seconds_total",
        "counter",
        "Seconds spent running callbacks and the loop's own work.",
    ),
    ("fds", "goloop_watched_fds", "gauge", "File descriptors the loop watches."),
    ("timers", "goloop_pending_timers", "gauge", "Timers scheduled and not yet run."),
    ("transports", "goloop_open_transports", "gauge", "Socket transports open."),
    ("bytes_in", "goloop_received_bytes_total", "counter", "Bytes received by transports."),
    ("bytes_out", "goloop_sent_bytes_total", "counter", "Bytes sent by transports."),
    ("datagrams_in", "goloop_received_datagrams_total", "counter", "Datagrams received."),
    ("datagrams_out", "goloop_sent_datagrams_total", "counter", "Datagrams sent or queued."),
    ("accepted", "goloop_accepted_connections_total", "counter", "Connections accepted."),
)


def _label(value):
    """A label value escaped as the text format wants it."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(stats):
    """The text exposition of a goloop.LoopStats, one sample per line."""
    lines = [
        "# HELP goloop_info The engine the event loop runs on.",
        "# TYPE goloop_info gauge",
        f'goloop_info{{engine="{_label(stats.engine)}"}} 1',
    ]
    for field, name, kind, text in METRICS:
        lines += [
            f"# HELP {name} {text}",
            f"# TYPE {name} {kind}",
            f"{name} {getattr(stats, field)}",
        ]
    if stats.slow_threshold is not None:
        lines += [
            "# HELP goloop_slow_callback_threshold_seconds Callbacks this slow are tracked.",
            "# TYPE goloop_slow_callback_threshold_seconds gauge",
            f"goloop_slow_callback_threshold_seconds {stats.slow_threshold}",
            "# HELP goloop_slow_callback_seconds The slowest callbacks seen, by rank and place.",
            "# TYPE goloop_slow_callback_seconds gauge",
        ]
        # Labelled by rank and source location only: the callback's text
        # (a task's repr, its arguments) changes too often to be a label.
        for rank, slow in enumerate(stats.slow_callbacks, 1):
            where = f"{slow.filename}:{slow.lineno}" if slow.filename else "unknown"
            lines.append(
                f'goloop_slow_callback_seconds{{rank="{rank}",location="{_label(where)}"}} '
                f"{slow.seconds}"
            )
    return "\n".join(lines) + "\n"


async def _send(send, status, body, content_type="text/plain; charset=utf-8"):
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            loop = asyncio.get_running_loop()
            if isinstance(loop, goloop.Loop):
                goloop.track_slow_callbacks(loop, SLOW_CALLBACK_THRESHOLD)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    """The ASGI application: /metrics, and "hello" everywhere else."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["path"] != "/metrics":
        await _send(send, 200, b"hello\n")
        return
    try:
        stats = goloop.stats(asyncio.get_running_loop())
    except TypeError:
        await _send(
            send, 503, b"not a goloop loop: run uvicorn with --loop goloop:new_event_loop\n"
        )
        return
    await _send(send, 200, render(stats).encode(), "text/plain; version=0.0.4; charset=utf-8")
