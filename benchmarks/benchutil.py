"""Small helpers shared by the micro-benchmarks (run.py, micro.py) and the
network benchmarks (net/netcommon.py). Stdlib only."""

import argparse
import platform
from pathlib import Path


def csv_choices(choices):
    """argparse type: a comma-separated list of names from ``choices``."""

    def parse(text):
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = sorted(set(names) - set(choices))
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown)} (choose from {', '.join(choices)})"
            )
        return names

    return parse


def describe(exc):
    """``Type: message (in function)`` for an exception, with its origin."""
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        text += f" (in {tb.tb_frame.f_code.co_name})"
    return text


def cpu_model():
    """The CPU's model name, for the machine line of the reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
