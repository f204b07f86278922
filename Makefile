# One-command set-up for a fresh Debian machine (run as root, or with sudo available).
# `make demo` and `make test` install what is missing, then run. Both are idempotent:
# a second run skips every install step that is already satisfied.

PYTHON   ?= python3
VENV     ?= .venv
APT_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm mosquitto
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP    := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers, one more than the cores: a worker waiting on QEMU, a socket or a
# subprocess leaves its core to the extra one (a fresh clone on 2 cores, 7 Dec: pytest 356 s with 2, 343 s with 3). The host and
# QEMU suites run in parallel, an idle worker taking tests queued for a busy one (worksteal);
# each worker builds into its own folder (aiot.testing.worker_build_dir), the caches are shared.
PYTEST_JOBS ?= $(shell echo $$(( $$(nproc) + 1 )))

.PHONY: demo test setup apt deps chromium venv hil bench clean help

help:
	@echo "make demo   - install what is missing, then run the end-to-end demo (aiot demo)"
	@echo "make test   - install what is missing (and chromium, which renders the report pages), then run the host and QEMU test suites (PYTEST_JOBS: cores + 1 workers)"
	@echo "make setup  - only install (apt packages + $(VENV))"
	@echo "make clean  - remove build outputs (keeps $(VENV))"

demo: setup
	$(VENV)/bin/aiot demo

# The apt packages (deps, then chromium: one apt at a time) and the venv install in parallel.
test:
	@$(MAKE) --no-print-directory -j2 apt venv
	$(VENV)/bin/python -m pytest -n $(PYTEST_JOBS) --dist worksteal tests hil_tests $(PYTEST_ARGS)

setup: deps venv

# apt is only touched when a tool is actually missing.
deps:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null \
	    && [ -f /usr/lib/arm-none-eabi/newlib/libc.a ] && [ -x /usr/sbin/mosquitto ]; then \
	    echo "deps: arm-none-eabi-gcc, newlib, qemu-system-arm and mosquitto present"; \
	else \
	    echo "deps: installing $(APT_PKGS)"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	fi

# tests/test_reports_render.py renders the report pages in headless Chromium; apt is only
# touched when it is missing (a demo does not need it).
chromium:
	@if command -v chromium >/dev/null; then \
	    echo "chromium: present"; \
	else \
	    echo "chromium: installing chromium"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; \
	fi

apt:
	@$(MAKE) --no-print-directory deps && $(MAKE) --no-print-directory chromium

venv: $(STAMP)

# uv installs the same requirements as pip in a third of the time (parallel downloads, one
# resolver pass); pip does it when uv cannot be had. --compile-bytecode as pip does: without
# it every pytest worker compiled TensorFlow's modules on its first import (fresh clone, 3 workers:
# 754 CPU-s against 677).
EXTRAS := .[ml,test,boards,lifecycle,fleet]
$(STAMP): pyproject.toml
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	@if $(VENV)/bin/python -m pip install -q uv 2>/dev/null && \
	    $(VENV)/bin/uv pip install -q --compile-bytecode --python $(VENV)/bin/python -e '$(EXTRAS)'; then \
	    echo "venv: $(VENV) installed (uv)"; \
	else \
	    echo "venv: uv unavailable, installing with pip"; \
	    $(VENV)/bin/python -m pip install -q --upgrade pip && \
	    $(VENV)/bin/python -m pip install -q -e '$(EXTRAS)'; \
	fi
	@touch $@

clean:
	rm -rf build out dist .pytest_cache toolkit/*.egg-info
