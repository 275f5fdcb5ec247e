"""Statistics and markdown rendering shared by the network runners.

A cell is ``{"status": ..., "samples": [...], "errors": [...]}``; status is
``ok``, ``failed`` (wrong echo, crash, timeout), ``unsupported`` (the loop
lacks an API the server needs) or ``unavailable`` (loop not importable).
A sample holds ``rps`` and ``cpu_user_us`` / ``cpu_sys_us`` (server CPU
time per request) plus the CPU utilisation of server and client.
"""

import statistics
import sys

METRICS = ("rps", "cpu_us", "cpu_user_us", "cpu_sys_us", "server_util", "client_util")


def new_cell():
    return {"status": "ok", "samples": [], "errors": []}


def record_error(cell, status, error, where):
    """Mark a cell failed / unsupported (it then stays so) and log why."""
    cell["status"] = status
    cell["errors"].append({"rep": where.get("rep"), "error": error})
    label = "FAILED" if status == "failed" else f"n/a ({status})"
    print(f"{where.get('label', '?')}: {label}: {error}", file=sys.stderr, flush=True)


def cpu_sample(requests, seconds, server_cpu, client_cpu=None):
    """Per-request server CPU (µs) from (user, sys) deltas in seconds."""
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
    return sample


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
        text = f"{median(cell, 'cpu_us'):.1f} ({user:.1f}u+{system:.1f}s) ±{spread(cell, 'cpu_us'):.0%}"
    return text


def fmt_ratio(value):
    return "n/a" if value is None else f"{value:.2f}"


def table(head, rows, left=1):
    """Markdown table: the first ``left`` columns left-aligned, the rest right."""
    aligns = ["---"] * left + ["---:"] * (len(head) - left)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(aligns) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def utilisation_note(cells):
    """One line on how busy server and client were (is the server the limit?)."""
    server, client = [], []
    for cell in cells:
        if "stats" in cell:
            server.append(median(cell, "server_util"))
            if median(cell, "client_util") is not None:
                client.append(median(cell, "client_util"))
    if not server:
        return None
    text = f"server CPU utilisation (median per cell) {min(server):.0%}–{max(server):.0%}"
    if client:
        text += f"; load generator {min(client):.0%}–{max(client):.0%}"
    return text
