# One-command set-up for a fresh Debian machine (run as root, or with sudo available).
# `make demo` and `make test` install what is missing, then run. Both are idempotent:
# a second run skips every install step that is already satisfied.

PYTHON   ?= python3
VENV     ?= .venv
APT_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP    := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test setup deps venv hil bench clean help

help:
	@echo "make demo   - install what is missing, then run the end-to-end demo (aiot demo)"
	@echo "make test   - install what is missing, then run the host and QEMU test suites"
	@echo "make setup  - only install (apt packages + $(VENV))"
	@echo "make clean  - remove build outputs (keeps $(VENV))"

demo: setup
	$(VENV)/bin/aiot demo

test: setup
	$(VENV)/bin/python -m pytest tests hil_tests $(PYTEST_ARGS)

setup: deps venv

# apt is only touched when a tool is actually missing.
deps:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null \
	    && [ -f /usr/lib/arm-none-eabi/newlib/libc.a ]; then \
	    echo "deps: arm-none-eabi-gcc, newlib and qemu-system-arm present"; \
	else \
	    echo "deps: installing $(APT_PKGS)"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[ml,test,boards,lifecycle]'
	@touch $@

clean:
	rm -rf build out .pytest_cache
