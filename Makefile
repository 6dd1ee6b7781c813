# facenerf: `make demo` and `make test` do everything on a fresh machine.
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
EDITABLE := $(VENV)/.editable
GLSTAMP := $(VENV)/.gl-platform
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

TINY    ?= data/tiny

.PHONY: install gl osmesa test demo demo-core tiny-data tiny-train tiny-fit clean help

help:
	@echo "make demo       - install what is missing, run the MoFaNeRF chain and NeRFBlendShape on built-in synthetic data"
	@echo "make test       - install what is missing, run the CPU test suite"
	@echo "make install    - .venv from the pinned requirements, facenerf installed into it (editable)"
	@echo "make tiny-data  - README stage 1: synthetic FaceScape-format data in $(TINY), aligned and rendered"
	@echo "make tiny-train - README stage 2: train configs/mofanerf_tiny.txt on it (CPU, about 5 minutes)"
	@echo "make tiny-fit   - README stage 4: fit held-out identity 5 and render its novel views"
	@echo "make gl / make osmesa / make clean"

# Install the pinned requirements into .venv when it is missing or a requirements file changed.
$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

# The package itself, editable (offline: setuptools comes with the pinned requirements).
$(EDITABLE): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(EDITABLE)

install: $(EDITABLE)

# Headless OpenGL for pyrender: EGL (Mesa, no GPU needed) first, OSMesa from apt as the fallback.
$(GLSTAMP): $(STAMP)
	@platform=$$($(PY) -m facenerf.tools.gl_platform 2>/dev/null) || { \
	  echo "EGL unavailable: installing OSMesa (libosmesa6) from apt"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libosmesa6 >/dev/null; \
	  platform=$$($(PY) -m facenerf.tools.gl_platform) || exit 1; }; \
	echo "$$platform" > $@; echo "headless OpenGL: $$platform"

gl: $(GLSTAMP)

# OSMesa for `render.py --gl osmesa` (about 3x faster than EGL on a CPU), from apt.
osmesa:
	@SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libosmesa6 >/dev/null && echo "libosmesa6 installed"

test: $(EDITABLE) $(GLSTAMP)
	PYOPENGL_PLATFORM=$$(cat $(GLSTAMP)) $(PY) -m pytest -q -n 2 $(PYTEST_ARGS) tests

demo: $(EDITABLE) $(GLSTAMP)
	PYOPENGL_PLATFORM=$$(cat $(GLSTAMP)) DEMO_OUT=$(DEMO_OUT) PY=$(PY) bash scripts/demo.sh

demo-core: $(EDITABLE)
	$(PY) -m facenerf.tools.core_demo --out $(DEMO_OUT)/core

# The README's CPU stages on the synthetic stand-in (each reruns only what is missing).
tiny-data: $(EDITABLE) $(GLSTAMP)
	$(PY) -m facenerf.data.synthetic --ids 5 --out $(TINY) --texture_size 512
	$(PY) align_clip.py --data $(TINY)
	PYOPENGL_PLATFORM=$$(cat $(GLSTAMP)) $(PY) render.py --data $(TINY) --resolution 64 --views 40 --workers 2 \
	    --expressions neutral,smile,mouth_stretch,jaw_left

tiny-train: $(EDITABLE)
	$(PY) run_train.py -c configs/mofanerf_tiny.txt --datadir $(TINY)/multiViewImages

tiny-fit: $(EDITABLE)
	$(PY) run_fit.py -c configs/fit_tiny.txt --datadir $(TINY)/multiViewImages --filePath $(TINY)/multiViewImages/5/neutral/0_10.png
	$(PY) run_fit.py -c configs/fit_tiny.txt --datadir $(TINY)/multiViewImages --filePath $(TINY)/multiViewImages/5/neutral/0_10.png \
	    --renderType rendering

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
