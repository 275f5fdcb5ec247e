"""Per-call cost of the language crossings goloop's design is built around.

Prints ns per call for: C->Go (glResolveStart with an empty list: the
crossing a loop iteration that started name lookups makes), the same with
the GIL released and re-acquired around it (what gopy's generated wrappers
do on every call), Python->C (a METH_NOARGS method: loop.time()), and a
Python-level wrapper function around that C call (gopy's generated .py
layer). Run: python benchmarks/crossing.py
"""

import time

import goloop

N = 2_000_000


def per_call_ns(fn, n=N):
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) * 1e9 / n


def python_to_c(n, loop):
    t = loop.time
    for _ in range(n):
        t()


def python_wrapper_to_c(n, loop):
    t = loop.time

    def wrapper():
        return t()

    for _ in range(n):
        wrapper()


def empty_loop(n):
    for _ in range(n):
        pass


def main():
    from goloop import _goloop

    loop = goloop.new_event_loop()
    try:
        base = per_call_ns(empty_loop)
        rows = [
            ("C -> Go (cgo call: glResolveStart)", _goloop._bench_crossing(N, False)),
            ("C -> Go with GIL release/re-acquire", _goloop._bench_crossing(N, True)),
            ("Python -> C (loop.time())", per_call_ns(lambda n: python_to_c(n, loop)) - base),
            (
                "Python wrapper -> C",
                per_call_ns(lambda n: python_wrapper_to_c(n, loop)) - base,
            ),
        ]
    finally:
        loop.close()
    print("| crossing | ns per call |\n|---|---:|")
    for name, ns in rows:
        print(f"| {name} | {ns:.0f} |")


if __name__ == "__main__":
    main()
