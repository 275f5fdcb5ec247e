"""Statistics and markdown rendering shared by the network runners.

A cell is ``{"status": ..., "samples": [...], "errors": [...]}``; status is
``ok``, ``failed`` (wrong echo, crash, timeout), ``unsupported`` (the loop
lacks an API the server needs) or ``unavailable`` (loop not importable).
A sample holds ``rps`` and ``cpu_user_us`` / ``cpu_sys_us`` (server CPU
time per request) plus the CPU utilisation of server and client.
"""

import statistics
import sys
import time

METRICS = (
    "rps",
    "cpu_us",
    "cpu_user_us",
    "cpu_sys_us",
    "server_util",
    "client_util",
    "other_util",
    "irq_util",
    "steal_util",
    "p50_ms",
)


def new_cell():
    return {"status": "ok", "samples": [], "errors": []}


def record_error(cell, status, error, where):
    """Mark a cell failed / unsupported (it then stays so) and log why."""
    cell["status"] = status
    cell["errors"].append({"rep": where.get("rep"), "error": error})
    label = "FAILED" if status == "failed" else f"n/a ({status})"
    print(f"{where.get('label', '?')}: {label}: {error}", file=sys.stderr, flush=True)


def cpu_sample(requests, seconds, server_cpu, client_cpu=None, machine=None):
    """Per-request server CPU (µs) from (user, sys) deltas in seconds.

    ``machine``: deltas of netcommon.system_cpu() over the window; what the
    two CPUs did besides server and client is reported as ``other_util``
    (another process, or kernel time not charged to either).
    """
    user, system = server_cpu
    sample = {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds,
        "cpu_user_us": user / requests * 1e6,
        "cpu_sys_us": system / requests * 1e6,
        "cpu_us": (user + system) / requests * 1e6,
        "server_util": (user + system) / seconds,
    }
    if client_cpu is not None:
        sample["client_util"] = sum(client_cpu) / seconds
    if machine is not None:
        busy, irq, steal = machine
        ours = user + system + sum(client_cpu or (0, 0))
        sample["other_util"] = max(busy - ours, 0.0) / seconds
        sample["irq_util"], sample["steal_util"] = irq / seconds, steal / seconds
    return sample


def measure_quiet(measure, busy, retries):
    """Call ``measure()`` -> result dict; while the machine was busy during
    the window (``other_util`` > ``busy``: another process ran on the two
    CPUs), wait a little and measure again, at most ``retries`` times.  The
    last result is kept, with the number of retries and the ``busy`` flag."""
    for attempt in range(retries + 1):
        result = measure()
        sample = result.get("sample")
        if sample is None:
            return result
        sample["retries"] = attempt
        sample["busy"] = sample.get("other_util", 0.0) > busy
        if not sample["busy"]:
            return result
        print(
            f"  busy machine: {sample['other_util']:.0%} of a CPU used by others, "
            + ("measuring again" if attempt < retries else "keeping it (flagged)"),
            file=sys.stderr,
            flush=True,
        )
        time.sleep(1.0)
    return result


def busy_note(cells):
    """How many samples were re-measured or kept although the machine was busy."""
    samples = [s for cell in cells for s in cell["samples"]]
    retried = sum(s.get("retries", 0) for s in samples)
    busy = sum(bool(s.get("busy")) for s in samples)
    if not (retried or busy):
        return None
    return (
        f"busy machine: {retried} sample(s) re-measured because another process used the "
        f"CPUs during the window; {busy} of {len(samples)} kept although still busy"
    )


def summarize(cell):
    """Add {metric: {median, min, max}} for every metric of an ok cell."""
    if cell["status"] != "ok" or not cell["samples"]:
        return cell
    stats = {}
    for metric in METRICS:
        values = sorted(s[metric] for s in cell["samples"] if metric in s)
        if values:
            stats[metric] = {
                "median": statistics.median(values),
                "min": values[0],
                "max": values[-1],
            }
    cell["stats"] = stats
    return cell


def median(cell, metric):
    return cell.get("stats", {}).get(metric, {}).get("median")


def ratio(cell, base, metric):
    a, b = median(cell, metric), median(base, metric)
    return None if a is None or b is None or b == 0 else a / b


# ------------------------------------------------------------ formatting


def fmt_rate(value):
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def spread(cell, metric):
    s = cell["stats"][metric]
    return (s["max"] - s["min"]) / 2 / s["median"] if s["median"] else 0.0


def status_text(cell):
    if cell is None:
        return "—"
    if cell["status"] == "failed":
        return "FAILED"
    if "stats" not in cell:
        return "n/a"
    return None


def fmt_rps(cell):
    text = status_text(cell)
    if text is None:
        text = f"{fmt_rate(median(cell, 'rps'))} ±{spread(cell, 'rps'):.0%}"
    return text


def fmt_cpu(cell):
    text = status_text(cell)
    if text is None:
        user, system = median(cell, "cpu_user_us"), median(cell, "cpu_sys_us")
        total, rel = median(cell, "cpu_us"), spread(cell, "cpu_us")
        text = f"{total:.1f} ({user:.1f}u+{system:.1f}s) ±{rel:.0%}"
    return text


def fmt_ratio(value):
    return "n/a" if value is None else f"{value:.2f}"


def table(head, rows, left=1):
    """Markdown table: the first ``left`` columns left-aligned, the rest right."""
    aligns = ["---"] * left + ["---:"] * (len(head) - left)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(aligns) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


UTIL_LABELS = {
    "server_util": "server",
    "client_util": "load generator",
    "other_util": "anything else on the two CPUs",
    "irq_util": "irq+softirq",
    "steal_util": "steal",
}


def utilisation_note(cells):
    """How busy server, client and the rest of the machine were (range of
    per-cell medians): is the server the limit, was the machine quiet?"""
    values = {key: [] for key in UTIL_LABELS}
    for cell in cells:
        for key, found in values.items():
            if median(cell, key) is not None:
                found.append(median(cell, key))
    parts = [f"{UTIL_LABELS[key]} {min(v):.0%}–{max(v):.0%}" for key, v in values.items() if v]
    if not parts:
        return None
    return "CPU utilisation during the windows (range of per-cell medians, 100% = one CPU): " + (
        ", ".join(parts)
    )
