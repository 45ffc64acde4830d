# Two commands on a fresh machine:
#   make up    set-up, demo cubes, then the embedded platform for the demo project
#   make test  set-up, then the whole test suite (ruff check + ruff format --check + pytest)
# Set-up installs everything into the repository (.venv, node_modules) and is quick when nothing changed.

VENV     := .venv
PY       := $(VENV)/bin/python
ESDL     := $(VENV)/bin/esdl
EXTRAS   := hub,ml,viz,deploy,dev
PY_STAMP := $(VENV)/.installed-$(EXTRAS)
NODE_STAMP := $(if $(wildcard package.json),node_modules/.installed)
# the hub side of a Kubernetes deployment at the versions z2jh's hub image runs (tests/hub/requirements.txt)
HUB_VENV := .venv-hub
HUB_STAMP := $(HUB_VENV)/.installed
PROJECT  ?= demo
# the base Python of .venv: one every OS account can run, because `esdl up` as root runs each person's
# server under their own account (a pyenv build under /root, which is 0700, is not); see
# platform_lib/local/interpreter.py
BASE_PYTHON ?= $(shell python3 platform_lib/local/interpreter.py)

.PHONY: setup browser up test lint lock chart-lock demo-cubes bench help image image-test

help:
	@echo "make up      set up, generate the demo cubes if missing, run the embedded platform (PROJECT=$(PROJECT)); Ctrl-C stops it"
	@echo "make test    set up, then ruff (lint and format check) and the whole pytest suite"
	@echo "make bench   run every benchmark in bench/ (prints ratios against references)"
	@echo "make lock    re-resolve the images' locks (images/notebook/*.lock) after a dependency change"
	@echo "make image   build the user images esdl-user and esdl-user-ml with buildah (root; docs/images.md)"
	@echo "make image-test  check inside each image, as its user: hub version, dask, platform_lib, cube, notebooks, torch"

# bytecode up front (uv --compile-bytecode for the venv, compileall for our package): every hub, gateway,
# user server and `esdl` start reads it instead of compiling, even where PYTHONDONTWRITEBYTECODE is set
setup: $(PY_STAMP) $(NODE_STAMP) $(HUB_STAMP)
	@$(PY) -m compileall -q platform_lib >/dev/null

# torch comes first and pinned (constraints.txt): the CPU build on disk, not a CUDA download.
# uv resolves and installs the rest in seconds (and compiles the venv's bytecode); pip only bootstraps it.
# The images' locks (images/notebook/requirements.lock and requirements-ml.lock, see IMAGE_LOCKS) constrain
# it too, so what the tests run is what the user/worker images ship.
IMAGE_LOCKS := images/notebook/requirements.lock images/notebook/requirements-ml.lock
$(PY_STAMP): pyproject.toml constraints.txt $(IMAGE_LOCKS)
	@test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv -c constraints.txt torch==2.13.0
	$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode --constraint constraints.txt \
	  $(addprefix --constraint ,$(IMAGE_LOCKS)) -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $@

$(HUB_STAMP): tests/hub/requirements.txt $(PY_STAMP)
	@test -x $(HUB_VENV)/bin/python || python3 -m venv $(HUB_VENV)
	$(VENV)/bin/uv pip install -q --python $(HUB_VENV)/bin/python -r tests/hub/requirements.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Debian's Chromium for the real-browser tests (tools' own browser downloads fail here): installed when it
# can be (root with apt); otherwise every browser test skips with one reason (tests/platform_helpers.py)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "note: could not install chromium with apt; the browser tests will skip"; \
	  else echo "note: chromium is not installed (needs root and apt); the browser tests will skip"; fi; }

demo-cubes: setup
	$(ESDL) cubes generate

up: demo-cubes
	$(ESDL) up --project $(PROJECT) --foreground

test: setup browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check platform_lib tests bench
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check platform_lib tests bench

# re-resolve the images' exact versions (both locks, with hashes) after a dependency change in pyproject.toml
lock: setup
	$(PY) images/notebook/lock.py

# helm/esdl-project/Chart.lock after a change of the chart's dependencies (tests/test_helm_chart.py checks it)
chart-lock: setup
	$(PY) -c "from platform_lib.deploy.chart import chart_lock; open('helm/esdl-project/Chart.lock', 'w').write(chart_lock())"

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# the user/worker images (docs/images.md): buildah, no daemon, as root; a base made with debootstrap when
# none is given (IMAGE_BASE=docker.io/library/python:3.11-slim-bookworm@sha256:... for another)
IMAGE_ARGS ?=
image:
	python3 images/build.py build $(if $(IMAGE_BASE),--base $(IMAGE_BASE)) $(IMAGE_ARGS)

# checks inside each built image as its user; the demo cube they read is written here with .venv
image-test: setup
	$(PY) images/build.py test $(IMAGE_ARGS)
