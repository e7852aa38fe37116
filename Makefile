# telemetry-pipeline: `make run` starts everything on embedded defaults, `make test` runs the suite.
# Both install what they need first (idempotent; Debian packages via apt-get when missing:
# redis-server, postgresql, chromium, firefox-esr, wrk, gcc, python3-venv, python3-dev, systemd,
# bubblewrap, npm, openssh-server).

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
APT_PKGS := redis-server chromium firefox-esr wrk
PYTEST_ARGS ?=
# flags for `make run` (python -m launcher --help), e.g. ARGS="--no-demo --ingest-port 8081"
ARGS ?=
# The dashboard's chart library, vendored from the npm registry at build time (no CDN at run time).
VENDOR  := dashboard/static/vendor
CHARTJS_VERSION := 4.6.1

.PHONY: setup system-packages run test bench lint format clean

setup: system-packages $(STAMP) histograms/_fast.so-stamp $(VENDOR)/chart.umd.min.js

system-packages:
	@missing=""; \
	for cmd in redis-server:redis-server chromium:chromium firefox-esr:firefox-esr wrk:wrk cc:gcc systemd-analyze:systemd bwrap:bubblewrap npm:npm /usr/sbin/sshd:openssh-server; do \
		bin=$${cmd%%:*}; pkg=$${cmd##*:}; \
		command -v $$bin >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	$(PY) -c "import ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	$(PY) -c "import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))" \
		2>/dev/null || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools 'Cython>=3.0'
	$(BIN)/pip install -q -e '.[test,dask]'
	touch $(STAMP)

# The Cython hot loop, built in place so the editable install picks it up.
histograms/_fast.so-stamp: histograms/_fast.pyx aggregates/_scan.pyx mapreduce/_jsonscan.pyx pipeline/_jsonskip.pxd $(STAMP)
	$(BIN)/python setup.py -q build_ext --inplace
	$(BIN)/python -c "import histograms._fast" || { echo "the Cython hot loop did not build (see above)"; exit 1; }
	$(BIN)/python -c "import aggregates._scan" || { echo "the aggregates scanner did not build (see above)"; exit 1; }
	$(BIN)/python -c "import mapreduce._jsonscan" || { echo "the record scanner did not build (see above)"; exit 1; }
	touch $@

# Idempotent: npm installs the pinned version into build/npm once; the copy is gitignored.
$(VENDOR)/chart.umd.min.js: Makefile
	npm install --silent --no-audit --no-fund --no-save --prefix build/npm chart.js@$(CHARTJS_VERSION)
	mkdir -p $(VENDOR)
	cp build/npm/node_modules/chart.js/dist/chart.umd.min.js $@.tmp && mv $@.tmp $@
	cp build/npm/node_modules/chart.js/LICENSE.md $(VENDOR)/chart.js.LICENSE.md

run: setup
	$(BIN)/python -m launcher $(ARGS)

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc = 5 ]; then echo "pytest collected no tests for: $(PYTEST_ARGS)"; exit 0; fi; exit $$rc

bench: setup
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info histograms/_fast.*.so histograms/_fast.c histograms/_fast.so-stamp \
		aggregates/_scan.*.so aggregates/_scan.c
