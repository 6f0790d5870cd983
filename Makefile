# The two commands of the README: `make demo` and `make test`. Both create or reuse the virtual
# environment (cached outside the clone, keyed by the requirement files' hash).
SHELL := /bin/bash
VENV = $(shell scripts/env.sh)
DEMO_DIR ?= $(HOME)/.cache/autolabel_ros/demo

.PHONY: demo test lint benchmark env

env:
	@scripts/env.sh

# PYTHONPATH pins imports to this checkout, whichever clone last refreshed the shared venv (a sourced
# ROS 2 keeps its entries after it).
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

demo:
	@venv=$$(scripts/env.sh) && $$venv/bin/python -m autolabel_ros.cli.demo --dir $(DEMO_DIR)

test:
	@venv=$$(scripts/env.sh) && $$venv/bin/python -m pytest -q test

lint:
	@venv=$$(scripts/env.sh) && $$venv/bin/ruff check autolabel_ros test benchmarks

benchmark:
	@venv=$$(scripts/env.sh) && $$venv/bin/python benchmarks/run_all.py
