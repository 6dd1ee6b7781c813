# facenerf: `make demo` and `make test` do everything on a fresh machine.
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
GLSTAMP := $(VENV)/.gl-platform
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: install gl test demo demo-core clean help

help:
	@echo "make demo   - install what is missing, run the MoFaNeRF chain and NeRFBlendShape on built-in synthetic data"
	@echo "make test   - install what is missing, run the CPU test suite"
	@echo "make install / make gl / make clean"

# Install the pinned requirements into .venv when it is missing or a requirements file changed.
$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

# Headless OpenGL for pyrender: EGL (Mesa, no GPU needed) first, OSMesa from apt as the fallback.
$(GLSTAMP): $(STAMP)
	@platform=$$($(PY) -m facenerf.tools.gl_platform 2>/dev/null) || { \
	  echo "EGL unavailable: installing OSMesa (libosmesa6) from apt"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libosmesa6 >/dev/null; \
	  platform=$$($(PY) -m facenerf.tools.gl_platform) || exit 1; }; \
	echo "$$platform" > $@; echo "headless OpenGL: $$platform"

gl: $(GLSTAMP)

test: $(STAMP) $(GLSTAMP)
	PYOPENGL_PLATFORM=$$(cat $(GLSTAMP)) $(PY) -m pytest -q -n 2 $(PYTEST_ARGS) tests

demo: $(STAMP) $(GLSTAMP)
	PYOPENGL_PLATFORM=$$(cat $(GLSTAMP)) DEMO_OUT=$(DEMO_OUT) PY=$(PY) bash scripts/demo.sh

demo-core: $(STAMP)
	$(PY) -m facenerf.tools.core_demo --out $(DEMO_OUT)/core

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
