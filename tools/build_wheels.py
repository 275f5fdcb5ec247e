"""Build goloop's manylinux wheels from its sdist and check each with auditwheel.

    python tools/build_wheels.py --sdist dist/goloop-X.tar.gz --outdir dist \\
        --arch x86_64 --arch aarch64 .venv-3.11/bin/python .venv-3.12/bin/python

Each interpreter given (a venv with setuptools and wheel) builds the wheel
for its own CPython version, through setup.py as `pip install` would, for
each --arch. The C compiler cgo uses is `zig cc` (PyPI's ziglang, installed
for the interpreter running this script) with a target such as
x86_64-linux-gnu.2.17: zig links against that glibc's symbol versions and
has its own headers and libc stubs for every architecture, so one x86_64
machine builds wheels for glibc >= 2.17 on x86_64 and aarch64 (GOARCH=arm64)
without a sysroot. The wheels claim the manylinux_2_17 tag, and each must be
the tag `auditwheel show` computes from the built binary; anything else
(a newer symbol version, a library outside the policy) fails the build.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile

GLIBC = "2.17"
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}

# What an extension's ABI takes from pyconfig.h: an aarch64 wheel is built
# with an x86_64 interpreter's headers, which is right only where the two
# agree. Both are LP64 Linux (the SIZEOF_* below); a debug or free-threaded
# build changes object layouts.
CROSS_SAFE_CONFIG = {
    "SIZEOF_VOID_P": 8,
    "SIZEOF_LONG": 8,
    "SIZEOF_SIZE_T": 8,
    "SIZEOF_WCHAR_T": 4,
    "Py_DEBUG": 0,
    "Py_GIL_DISABLED": 0,
}


def interpreter_facts(python):
    """Return the target-relevant facts of the interpreter `python`."""
    names = ["cache_tag", "version", *CROSS_SAFE_CONFIG]
    code = (
        "import json, sys, sysconfig; "
        "print(json.dumps([sys.implementation.cache_tag, '%d%d' % sys.version_info[:2]]"
        f" + [sysconfig.get_config_var(n) or 0 for n in {list(CROSS_SAFE_CONFIG)!r}]))"
    )
    values = json.loads(
        subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    return dict(zip(names, values, strict=True))


def wheel_name(version, facts, arch):
    cp = f"cp{facts['version']}"
    return f"goloop-{version}-{cp}-{cp}-{platform_tag(arch)}.whl"


def platform_tag(arch):
    return f"manylinux_{GLIBC.replace('.', '_')}_{arch}"


def build_wheel(python, facts, arch, sdist, outdir, version):
    host = sysconfig.get_config_var("MULTIARCH").split("-")[0]
    if arch != host:
        wrong = {k: facts[k] for k, v in CROSS_SAFE_CONFIG.items() if facts[k] != v}
        if wrong:
            sys.exit(f"error: {python}'s headers cannot build for {arch}: {wrong}")
    target = os.path.join(outdir, wheel_name(version, facts, arch))
    if os.path.exists(target):
        os.remove(target)
    with tempfile.TemporaryDirectory() as tmp:
        # bdist_wheel's tag, through setuptools' extra config file
        config = os.path.join(tmp, "setup.cfg")
        with open(config, "w") as f:
            f.write(f"[bdist_wheel]\nplat_name = {platform_tag(arch)}\n")
        zig = f"{shlex.quote(sys.executable)} -m ziglang cc -target {arch}-linux-gnu.{GLIBC}"
        env = dict(
            os.environ,
            CC=zig,
            GOARCH=GOARCH[arch],
            # -s drops the symbol table and DWARF: x86_64 .so 2.2 MB instead of 4.0 MB
            GOFLAGS=(os.environ.get("GOFLAGS", "") + " -ldflags=-s").strip(),
            DIST_EXTRA_CONFIG=config,
            SETUPTOOLS_EXT_SUFFIX=f".{facts['cache_tag']}-{arch}-linux-gnu.so",
        )
        cmd = [python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        subprocess.run([*cmd, "-w", outdir, sdist], check=True, env=env)
    if not os.path.exists(target):
        sys.exit(f"error: pip wheel did not write {target}")
    return target


def audit(wheel, arch):
    """Return auditwheel's report; fail unless it computes the tag the wheel claims."""
    show = [sys.executable, "-m", "auditwheel", "show"]
    verdict = json.loads(
        subprocess.run([*show, "--json", wheel], capture_output=True, text=True, check=True).stdout
    )
    claimed = platform_tag(arch)
    if verdict["overall_tag"] != claimed or verdict["external_libs"]:
        sys.exit(
            f"error: {wheel} claims {claimed}; auditwheel computes {verdict['overall_tag']}"
            f" (libraries outside the policy: {verdict['external_libs'] or 'none'})"
        )
    return subprocess.run([*show, wheel], capture_output=True, text=True, check=True).stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sdist", required=True)
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--arch", action="append", choices=sorted(GOARCH), required=True)
    parser.add_argument("pythons", nargs="+", help="interpreters to build for")
    args = parser.parse_args()
    version = os.path.basename(args.sdist).removeprefix("goloop-").removesuffix(".tar.gz")
    for python in args.pythons:
        facts = interpreter_facts(python)
        for arch in args.arch:
            wheel = build_wheel(python, facts, arch, args.sdist, args.outdir, version)
            print(f"--- {wheel}\n{audit(wheel, arch)}", flush=True)


if __name__ == "__main__":
    main()
