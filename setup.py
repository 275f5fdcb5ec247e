"""Build goloop's extension module with the local Go toolchain.

The extension (goloop._goloop) is a cgo c-shared library: the C loop core in
pybridge/*.c linked with the Go engine in goloop/. setuptools does not know
Go, so build_ext hands that one extension to `go build -buildmode=c-shared`
with the running interpreter's headers.
"""

import os
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

GO_HINT = (
    "goloop needs the Go toolchain (1.22 or newer) and a C compiler to build "
    "from source. Install Go from https://go.dev/dl/ (or your distribution's "
    "golang package) and make sure `go` is on PATH, or install a prebuilt "
    "goloop wheel instead."
)


class GoExtension(Extension):
    def __init__(self, name, package_dir):
        super().__init__(name, sources=[])
        self.package_dir = package_dir


class build_go_ext(build_ext):
    def build_extension(self, ext):
        if not isinstance(ext, GoExtension):
            return super().build_extension(ext)
        go = shutil.which("go")
        if go is None:
            sys.exit("error: " + GO_HINT)
        if shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None:
            sys.exit("error: no C compiler found. " + GO_HINT)
        out = os.path.abspath(self.get_ext_fullpath(ext.name))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run(
            [go, "build", "-buildmode=c-shared", "-trimpath", "-o", out, ext.package_dir],
            check=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
            env=go_env(),
        )
        header = os.path.splitext(out)[0] + ".h"
        if os.path.exists(header):
            os.remove(header)


def go_env():
    env = dict(os.environ)
    include = sysconfig.get_paths()["include"]
    flags = f"-I{include} -O2 -Wall"
    env["CGO_ENABLED"] = "1"
    env["CGO_CFLAGS"] = (env.get("CGO_CFLAGS", "") + " " + flags).strip()
    return env


setup(
    ext_modules=[GoExtension("goloop._goloop", "./pybridge")],
    cmdclass={"build_ext": build_go_ext},
)
