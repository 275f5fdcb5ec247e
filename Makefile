# goloop: `make test` and `make bench` work from a clean clone.
# Each interpreter gets its own venv (.venv-3.11, ...); 3.11 is the default.

PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)
PY311 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.11*/bin/python3) $(shell command -v python3.11))
PY312 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.12*/bin/python3) $(shell command -v python3.12))
PY313 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.13*/bin/python3) $(shell command -v python3.13))
VERSIONS := 3.11 3.12 3.13
VENV := .venv-3.11
PY := $(VENV)/bin/python
SOURCES := $(wildcard goloop/*.go pybridge/*.go pybridge/*.c pybridge/*.h python/goloop/*.py) setup.py pyproject.toml
DEV_DEPS := pytest build ruff==0.17.6 setuptools wheel uvloop==0.23.0
BENCH_DEPS := uvloop==0.23.0 rloop==0.5.0 httptools==0.9.0 uvicorn==0.55.0

.PRECIOUS: .venv-%/.ready .venv-%/.built .venv-%/.bench

.PHONY: all setup build test test-go test-all-pythons conformance bench bench-micro bench-net lint clean

all: build

interp = $(PY$(subst .,,$(1)))

# ---- per-interpreter venvs with goloop installed -------------------------
.venv-%/.ready:
	@test -n "$(call interp,$*)" || { echo "Python $* not found (pyenv install $*)"; exit 1; }
	$(call interp,$*) -m venv .venv-$*
	.venv-$*/bin/pip install -q --upgrade pip
	.venv-$*/bin/pip install -q $(DEV_DEPS)
	touch $@

.venv-%/.built: .venv-%/.ready $(SOURCES)
	.venv-$*/bin/pip install -q --no-build-isolation --force-reinstall --no-deps .
	touch $@

setup: $(VENV)/.ready
build: $(VENV)/.built

# ---- tests ----------------------------------------------------------------
test: lint test-go test-all-pythons

CGO_PY_CFLAGS = -I$(shell $(PY) -c "import sysconfig; print(sysconfig.get_paths()['include'])")

lint: $(VENV)/.ready
	@test -z "$$(gofmt -l goloop pybridge)" || { gofmt -l goloop pybridge; echo "gofmt needed"; exit 1; }
	go vet ./goloop/
	CGO_CFLAGS="$(CGO_PY_CFLAGS)" go vet ./pybridge/
	$(VENV)/bin/ruff check python tests benchmarks setup.py
	$(VENV)/bin/ruff format --check python tests benchmarks setup.py

test-go:
	go test -count=1 ./goloop/
	go test -count=1 -race ./goloop/

test-py-%: .venv-%/.built
	cd tests && ../.venv-$*/bin/python -m pytest -q -p no:cacheprovider .
	.venv-$*/bin/python -m goloop.conformance --all --jobs 2 --ratchet tests/conformance/ratchet-$*.txt

test-all-pythons: $(addprefix test-py-,$(VERSIONS))

# Full test.test_asyncio under goloop vs stock, per interpreter; writes the
# reports the README quotes and grows the ratchets (never shrinks them).
conformance: $(addprefix .venv-,$(addsuffix /.built,$(VERSIONS)))
	for v in $(VERSIONS); do \
		.venv-$$v/bin/python -m goloop.conformance --all --jobs 2 \
			--ratchet tests/conformance/ratchet-$$v.txt --update-ratchet \
			--markdown docs/conformance-$$v.md || exit 1; \
	done

# ---- benchmarks -----------------------------------------------------------
$(VENV)/.bench: $(VENV)/.ready
	$(VENV)/bin/pip install -q $(BENCH_DEPS)
	touch $@

bench: bench-micro bench-net

bench-micro: $(VENV)/.built $(VENV)/.bench
	$(PY) benchmarks/run.py --loops asyncio,uvloop,rloop,goloop --require goloop \
		--json benchmarks/results/micro.json --markdown benchmarks/results/micro.md
	$(PY) benchmarks/timer_memory.py | tee benchmarks/results/timer_memory.md
	$(PY) benchmarks/crossing.py | tee benchmarks/results/crossing.md

# Echo (Go load generator), HTTP and uvicorn (wrk) and idle-connection
# memory, side by side; results in
# benchmarks/results/{net,http,uvicorn,idle,unix_dgram}.md.
# The servers import goloop from python/ (netcommon.python_env), so the
# extension is built in place there too.
bench-net: $(VENV)/.built $(VENV)/.bench
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) setup.py -q build_ext --inplace
	$(PY) benchmarks/net/run_echo.py
	$(PY) benchmarks/net/run_http.py
	$(PY) benchmarks/net/run_uvicorn.py
	$(PY) benchmarks/net/idle_conns.py
	$(PY) benchmarks/net/unix_dgram.py

clean:
	rm -rf .venv-* build dist python/goloop/*.so python/goloop/*.egg-info
