"""Driver for the goloop micro-benchmarks (bodies live in micro.py).

Every measurement runs in a fresh process (``python micro.py <bench>
<loop>``).  Repetitions are interleaved: within each repetition, every
benchmark is run once per loop, loops in a shuffled order, so slow drift
of a noisy machine hits all loops alike.  Reported: median ops/s over the
repetitions, the spread, and the ratio of each loop's median to the
baseline's (uvloop by default; > 1 means faster than the baseline).

    python benchmarks/run.py [--loops asyncio,uvloop,rloop,goloop]
        [--reps 5] [--json benchmarks/results/micro.json]
        [--markdown out.md] [--only name,...] [--quick] [--require [LOOPS]]

A loop that cannot be imported gets an "n/a" column and a note, unless it
is named by --require, in which case the run exits 1 before measuring.
The exit status is also 1 when a required loop has any cell that is not a
number (FAILED or n/a).  FAILED means a correctness check failed, the
body crashed or timed out; n/a means the loop lacks an API the body needs.
"""

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import micro
from benchutil import cpu_model, csv_choices

HERE = Path(__file__).resolve().parent
MICRO = HERE / "micro.py"
DEFAULT_JSON = HERE / "results" / "micro.json"
QUICK_REPS = 3


# ----------------------------------------------------------- arguments


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="goloop micro-benchmarks (one fresh process per sample)"
    )
    p.add_argument(
        "--loops",
        type=csv_choices(micro.LOOPS),
        default=",".join(micro.LOOPS),
        help="comma-separated loops (default: %(default)s)",
    )
    p.add_argument(
        "--reps", type=int, default=None, help="repetitions per cell (default 5, 3 with --quick)"
    )
    p.add_argument(
        "--json",
        default=str(DEFAULT_JSON),
        help="raw results file (default: %(default)s; '' = none)",
    )
    p.add_argument("--markdown", default=None, help="also write the table here")
    p.add_argument(
        "--only",
        type=csv_choices(list(micro.BENCHES)),
        default=None,
        help="comma-separated benchmark names",
    )
    p.add_argument("--quick", action="store_true", help="CI smoke mode: 3 reps, 1/5 sizes")
    p.add_argument(
        "--require",
        nargs="?",
        const="*",
        default="",
        help="loops that must be importable and pass every row (no value = all of --loops)",
    )
    p.add_argument(
        "--baseline",
        default="uvloop",
        help="loop the ratios are relative to (default: %(default)s)",
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds before one sample is FAILED"
    )
    p.add_argument("--seed", type=int, default=None, help="seed for the per-repetition loop order")
    args = p.parse_args(argv)
    return _finish_args(p, args)


def _finish_args(parser, args):
    if args.reps is None:
        args.reps = QUICK_REPS if args.quick else 5
    if args.reps < 1:
        parser.error("--reps must be >= 1")
    if args.require == "*":
        args.require = list(args.loops)
    else:
        args.require = csv_choices(micro.LOOPS)(args.require)
    missing = sorted(set(args.require) - set(args.loops))
    if missing:
        parser.error(f"--require names loops not in --loops: {', '.join(missing)}")
    args.only = args.only or list(micro.BENCHES)
    if args.baseline not in micro.LOOPS:
        parser.error(f"--baseline must be one of {', '.join(micro.LOOPS)}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    return args


# --------------------------------------------------------- subprocesses


def _child(cli_args, timeout):
    """Run micro.py with the given args; return its JSON result.

    The child's own watchdog fires at ``timeout``; the hard kill comes later.
    """
    cmd = [sys.executable, str(MICRO), *cli_args, "--timeout", str(timeout)]
    timeout += 15
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"timed out after {timeout:g} s"}
    return _parse_child(proc)


def _parse_child(proc):
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "error": f"exit {proc.returncode}, bad output: {tail}"}


def probe_loops(loops, timeout):
    """Import and create each loop in a child process."""
    info = {}
    for name in loops:
        result = _child(["--probe", name], timeout)
        ok = result["status"] == "ok"
        info[name] = {
            "available": ok,
            "version": result.get("version"),
            "path": result.get("path"),
            "note": None if ok else result.get("error"),
        }
    return info


# ----------------------------------------------------------- measuring


def _new_cells(benches, loops):
    return {b: {lp: {"status": "ok", "samples": [], "errors": []} for lp in loops} for b in benches}


def _record(cell, result, where):
    """Store one child result; ``where`` = {"rep", "seq", "bench", "loop"}."""
    status = result.get("status")
    if status == "ok":
        keys = ("elapsed", "ops", "ops_per_s", "cpu_per_op")
        cell["samples"].append(
            {"rep": where["rep"], "seq": where["seq"]} | {k: result[k] for k in keys if k in result}
        )
        return
    cell["status"] = "unsupported" if status == "unsupported" else "failed"
    error = result.get("error", status)
    cell["errors"].append({"rep": where["rep"], "error": error})
    label = "FAILED" if cell["status"] == "failed" else "n/a (unsupported)"
    print(f"{where['loop']} / {where['bench']}: {label}: {error}", file=sys.stderr)


def _mark_unavailable(cells, loop_info):
    for row in cells.values():
        for name, cell in row.items():
            if not loop_info[name]["available"]:
                cell["status"] = "unavailable"


def _progress(rep, args, bench, row, order):
    parts = []
    for name in order:
        cell = row[name]
        if cell["status"] != "ok":
            parts.append(f"{name} {'FAILED' if cell['status'] == 'failed' else 'n/a'}")
        elif cell["samples"] and cell["samples"][-1]["rep"] == rep:
            parts.append(f"{name} {fmt_rate(cell['samples'][-1]['ops_per_s'])}")
    print(f"[rep {rep}/{args.reps}] {bench:<15} " + "  ".join(parts), file=sys.stderr, flush=True)


def run_all(args, loop_info):
    """Interleaved repetitions; returns cells[bench][loop]."""
    cells = _new_cells(args.only, args.loops)
    _mark_unavailable(cells, loop_info)
    rng = random.Random(args.seed)  # noqa: S311 - shuffling only
    extra = ["--quick"] if args.quick else []
    seq = 0
    for rep in range(1, args.reps + 1):
        for bench in args.only:
            order = list(args.loops)
            rng.shuffle(order)
            for name in order:
                cell = cells[bench][name]
                if cell["status"] != "ok":  # a FAILED / n/a cell stays so
                    continue
                seq += 1
                where = {"rep": rep, "seq": seq, "bench": bench, "loop": name}
                _record(cell, _child([bench, name, *extra], args.timeout), where)
            _progress(rep, args, bench, cells[bench], order)
    return cells


# ----------------------------------------------------------- statistics


def summarize(cell):
    """Add median / min / max / quartiles of ops/s to an ok cell."""
    rates = sorted(s["ops_per_s"] for s in cell["samples"])
    if cell["status"] != "ok" or not rates:
        return cell
    q1, _, q3 = (
        statistics.quantiles(rates, n=4, method="inclusive") if len(rates) > 1 else (rates[0],) * 3
    )
    cell.update(median=statistics.median(rates), min=rates[0], max=rates[-1], q1=q1, q3=q3)
    cpus = [s["cpu_per_op"] for s in cell["samples"] if "cpu_per_op" in s]
    if cpus:
        cell["cpu_median"] = statistics.median(cpus)
    return cell


def ratio(cells_row, name, baseline):
    """Median ops/s of ``name`` over the baseline's, or None."""
    a, b = cells_row.get(name, {}), cells_row.get(baseline, {})
    if "median" in a and "median" in b:
        return a["median"] / b["median"]
    return None


# ------------------------------------------------------------ rendering


def fmt_rate(value):
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def fmt_cell(cell):
    if cell["status"] == "failed":
        return "FAILED"
    if "median" not in cell:
        return "n/a"
    half_range = (cell["max"] - cell["min"]) / 2 / cell["median"]
    return f"{fmt_rate(cell['median'])} ±{half_range:.0%}"


def _ratio_names(args):
    return [n for n in args.loops if n != args.baseline]


def render_table(args, cells):
    ratio_names = _ratio_names(args)
    head = ["benchmark", *args.loops, *(f"{n}/{args.baseline}" for n in ratio_names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for bench in args.only:
        row = cells[bench]
        values = [fmt_cell(row[n]) for n in args.loops]
        for name in ratio_names:
            r = ratio(row, name, args.baseline)
            values.append("n/a" if r is None else f"{r:.2f}")
        lines.append(f"| {micro.BENCHES[bench][1]} | " + " | ".join(values) + " |")
    return lines


def render_cpu_table(args, cells):
    """CPU of the whole process per op (median, µs), and each loop's over
    the baseline's (lower is better)."""
    ratio_names = _ratio_names(args)
    head = ["CPU per op (µs)", *args.loops, *(f"{n}/{args.baseline}" for n in ratio_names)]
    lines = ["", "| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for bench in args.only:
        row = cells[bench]
        cpu = {n: row[n].get("cpu_median") for n in args.loops}
        values = ["n/a" if cpu[n] is None else f"{cpu[n] * 1e6:.2f}" for n in args.loops]
        base = cpu.get(args.baseline)
        for name in ratio_names:
            ok = cpu[name] is not None and base
            values.append(f"{cpu[name] / base:.2f}" if ok else "n/a")
        lines.append(f"| {micro.BENCHES[bench][1]} | " + " | ".join(values) + " |")
    return lines


def _size_legend(args):
    out = []
    for bench in args.only:
        _body, title, full, small = micro.BENCHES[bench]
        size = small if args.quick else full
        out.append(f"- {title} (`{bench}`): {size:,} ops per run, 1 op = {micro.OP_UNITS[bench]}")
    return out


def _cell_notes(args, cells):
    out = []
    for bench in args.only:
        for name in args.loops:
            cell = cells[bench][name]
            if cell["status"] in ("failed", "unsupported") and cell["errors"]:
                label = "FAILED" if cell["status"] == "failed" else "n/a"
                err = cell["errors"][0]["error"]
                out.append(f"- {name} / {bench}: {label}: {err}")
    return out


def _legend(args):
    sizes = " (--quick sizes)" if args.quick else ""
    return (
        f"ops/s = median of {args.reps} fresh-process runs{sizes}; "
        "± = half the (max - min) range relative to the median; "
        f"`x/{args.baseline}` = ratio of medians "
        f"(>1 = faster than {args.baseline})."
    )


def _machine_line(meta):
    m = meta["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items())
    return (
        f"Machine: {m['arch']}, {m['cpu']}, {m['nproc']} CPUs; "
        f"Python {meta['python']}; {packages}; {meta['date']}"
    )


def render_notes(args, cells, loop_info, meta):
    out = ["", _legend(args), ""]
    for name in args.loops:
        info = loop_info[name]
        if not info["available"]:
            out.append(f"- **{name} not available** (column n/a): {info['note']}")
    out += _cell_notes(args, cells)
    out += _size_legend(args)
    return [*out, "", _machine_line(meta)]


# ------------------------------------------------------------- metadata


def _nproc():
    try:
        out = subprocess.run(["nproc"], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())
    except (OSError, ValueError, subprocess.CalledProcessError):
        return os.cpu_count()


def _git_commit():
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def metadata(args, loop_info):
    packages = {
        name: info["version"] or "not installed"
        for name, info in loop_info.items()
        if name != "asyncio"
    }
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "arch": platform.machine(),
            "cpu": cpu_model(),
            "nproc": _nproc(),
            "platform": platform.platform(),
        },
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "packages": packages,
        "git_commit": _git_commit(),
        "argv": sys.argv[1:],
        "reps": args.reps,
        "quick": args.quick,
        "seed": args.seed,
        "baseline": args.baseline,
        "timeout": args.timeout,
    }


# ----------------------------------------------------------------- main


def _json_doc(args, cells, loop_info, meta):
    ratios = {
        b: {n: ratio(cells[b], n, args.baseline) for n in _ratio_names(args)} for b in args.only
    }
    sizes = {b: micro.BENCHES[b][3 if args.quick else 2] for b in args.only}
    return {
        "meta": meta,
        "loops": loop_info,
        "sizes": sizes,
        "op_units": {b: micro.OP_UNITS[b] for b in args.only},
        "results": cells,
        "ratios": ratios,
    }


def _write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)


def _required_problems(args, cells, loop_info):
    problems = []
    for name in args.require:
        if not loop_info[name]["available"]:
            problems.append(f"{name} not available: {loop_info[name]['note']}")
            continue
        problems += [
            f"{name} / {b}: {cells[b][name]['status']}"
            for b in args.only
            if cells[b][name]["status"] != "ok"
        ]
    return problems


def _check_required_loops(args, loop_info):
    missing = [n for n in args.require if not loop_info[n]["available"]]
    for name in missing:
        print(
            f"error: required loop {name} not available: {loop_info[name]['note']}", file=sys.stderr
        )
    return not missing


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    loop_info = probe_loops(args.loops, args.timeout)
    if not _check_required_loops(args, loop_info):
        return 1
    meta = metadata(args, loop_info)
    cells = run_all(args, loop_info)
    for row in cells.values():
        for cell in row.values():
            summarize(cell)
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    tables = render_table(args, cells) + render_cpu_table(args, cells)
    text = "\n".join(tables + render_notes(args, cells, loop_info, meta)) + "\n"
    print(text)
    if args.markdown:
        _write(args.markdown, text)
    if args.json:
        doc = _json_doc(args, cells, loop_info, meta)
        _write(args.json, json.dumps(doc, indent=2) + "\n")
    print(f"total wall time: {meta['wall_seconds']} s", file=sys.stderr)
    problems = _required_problems(args, cells, loop_info)
    for problem in problems:
        print(f"error: required loop: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
