"""python -m goloop: what is installed.

python -m goloop --version    goloop's version
python -m goloop info         goloop, Go and interpreter versions, the
                              engine new loops use, and the extension's path
"""

import argparse
import platform
import sys

from . import __version__


def info():
    """Return (name, value) pairs describing this goloop installation.

    This loads the extension, and so starts the Go runtime (unless the
    process is a child forked after it was started: then the engine is the
    fork-safe C one, see docs/architecture.md, "Fork policy").
    """
    from . import _goloop

    if _goloop.forked():
        engine = "C (fork-safe fallback: forked after the Go runtime started)"
    else:
        engine = "Go"
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return [
        ("goloop", __version__),
        ("go", _goloop.go_version),
        ("python", f"{python} ({sys.executable})"),
        ("platform", platform.platform()),
        ("engine", engine),
        ("extension", _goloop.__file__),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m goloop",
        description="goloop: a drop-in asyncio event loop whose engine is written in Go.",
    )
    parser.add_argument("--version", action="version", version=f"goloop {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print goloop, Go and Python versions and the engine")
    parser.parse_args(argv)
    rows = info()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name + ':':<{width + 1}} {value}")


if __name__ == "__main__":
    main()
