"""PNG charts of the latest benchmark results, for the README.

Reads the JSON the runners write (benchmarks/results/{micro,net,http,
uvicorn}.json; a missing file skips its chart) and draws, per row, each
loop's speed relative to uvloop, so uvloop and rloop can be read off the
same picture:

- micro (benchmarks/run.py): median ops/s ÷ uvloop's.  Each micro-benchmark
  keeps one CPU busy for its whole run, so this is also uvloop's CPU per
  operation ÷ the loop's.
- network and real servers (benchmarks/net/): uvloop's median server CPU
  per request ÷ the loop's (CPU per operation is the steadier figure on
  this 2-core machine; requests/s moves with the load generator).

Higher is better everywhere; the dashed line is uvloop (1.0).  A loop that
lacks the API a row needs (rloop has no Unix sockets) has no bar there.

    python benchmarks/charts.py [--results benchmarks/results] [--out docs/bench]
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
BASELINE = "uvloop"
LOOPS = ("asyncio", "rloop", "goloop")  # bars, each relative to BASELINE
COLORS = {"asyncio": "#b0b0b0", "rloop": "#d9822b", "goloop": "#2b6cb0"}
# The uvicorn runner's row keys, as its table names them.
UVICORN_MODES = {
    "loop": "uvicorn (loop binds)",
    "sockets": "uvicorn (proto-0 socket)",
    "fd": "uvicorn --fd",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--out", type=Path, default=HERE.parent / "docs" / "bench")
    return p.parse_args(argv)


def _load(path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        print(f"charts: no {path}, its chart is skipped", file=sys.stderr)
        return None


def _cpu(cell):
    """Median server CPU µs per request of an ok network cell, or None."""
    if not cell or cell.get("status") != "ok":
        return None
    return cell.get("stats", {}).get("cpu_us", {}).get("median")


def _cpu_speedups(cells):
    """{loop: BASELINE's CPU per request ÷ the loop's} for one row."""
    base = _cpu(cells.get(BASELINE))
    out = {}
    for name in LOOPS:
        cpu = _cpu(cells.get(name))
        if base and cpu:
            out[name] = base / cpu
    return out


def micro_rows(doc):
    """[(label, {loop: ratio})] from benchmarks/run.py's JSON (its ratios)."""
    sys.path.insert(0, str(HERE))
    import micro  # the runner's own labels

    return [
        (micro.BENCHES[name][1], {k: v for k, v in ratios.items() if k in LOOPS and v})
        for name, ratios in doc["ratios"].items()
    ]


def echo_rows(doc):
    """Echo rows named SIZE-TRANSPORT-MODE; the native Go row has no loop."""
    return [
        (row.replace("-", " "), _cpu_speedups(cells))
        for row, cells in doc["results"].items()
        if not row.endswith("-native")
    ]


def server_rows(http, uvicorn):
    rows = []
    if http:
        rows.append(("httptools HTTP server", _cpu_speedups(http["results"])))
    if uvicorn:
        rows += [
            (UVICORN_MODES.get(mode, mode), _cpu_speedups(cells))
            for mode, cells in uvicorn["results"].items()
        ]
    return rows


def draw(rows, title, xlabel, path):
    """Horizontal grouped bars, one group per row, first row on top."""
    rows = [(label, ratios) for label, ratios in rows if ratios]
    if not rows:
        print(f"charts: nothing to draw for {path.name}", file=sys.stderr)
        return
    height = 0.8 / len(LOOPS)
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.45 * len(rows) * len(LOOPS) / 2))
    for i, name in enumerate(LOOPS):
        ys, xs = [], []
        for r, (_, ratios) in enumerate(rows):
            if name in ratios:
                ys.append(r + (i - (len(LOOPS) - 1) / 2) * height)
                xs.append(ratios[name])
        bars = ax.barh(ys, xs, height=height, color=COLORS[name], label=name)
        if name == "goloop":
            ax.bar_label(bars, fmt="%.2f", padding=2, fontsize=7)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1, label=f"{BASELINE} = 1")
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}", file=sys.stderr)


def _subtitle(doc):
    meta = doc.get("meta", {})
    return f"Python {meta.get('python', '?')}, {str(meta.get('date', '?'))[:10]}"


def main(argv=None):
    args = parse_args(argv)
    micro_doc = _load(args.results / "micro.json")
    if micro_doc:
        draw(
            micro_rows(micro_doc),
            f"Loop micro-benchmarks, ops/s relative to uvloop ({_subtitle(micro_doc)})",
            "ops/s ÷ uvloop's (higher is better)",
            args.out / "micro.png",
        )
    echo = _load(args.results / "net.json")
    if echo:
        draw(
            echo_rows(echo),
            f"Echo server, CPU per request relative to uvloop ({_subtitle(echo)})",
            "uvloop's server CPU per request ÷ the loop's (higher is better)",
            args.out / "net.png",
        )
    http, uvicorn = _load(args.results / "http.json"), _load(args.results / "uvicorn.json")
    if http or uvicorn:
        draw(
            server_rows(http, uvicorn),
            f"HTTP servers, CPU per request relative to uvloop ({_subtitle(http or uvicorn)})",
            "uvloop's server CPU per request ÷ the loop's (higher is better)",
            args.out / "servers.png",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
