# gpfl_tff: group personalized federated learning with TensorFlow Federated.
#   make setup  - create .venv/, install Bazel if missing, prepare the default dataset
#   make demo   - run the demo experiment
#   make test   - run all Bazel tests (bazel test //...)
#   make clean  - bazel clean (keeps .venv/ and data/cache/)
SHELL := /bin/bash
VENV_BIN := $(CURDIR)/.venv/bin
# Extra flags for `bazel test`, e.g. make test BAZEL_FLAGS="--test_output=all".
BAZEL_FLAGS ?=

.PHONY: setup demo test clean

setup:
	bash tools/setup.sh

demo: setup
	@if [ -f experiments/run_group_personalization.py ]; then \
	  echo "+ .venv/bin/python -m experiments.run_group_personalization --config=demo"; \
	  .venv/bin/python -m experiments.run_group_personalization --config=demo; \
	else \
	  echo "note: experiments/run_group_personalization.py not found; showing dataset statistics instead"; \
	  .venv/bin/python -m data.prepare --dataset=shakespeare --group_by=genre; \
	fi

# The venv's bin goes first on PATH so py_test targets run under its python3.
test: setup
	PATH="$(VENV_BIN):$$PATH" bazel test //... $(BAZEL_FLAGS)

clean:
	@if command -v bazel >/dev/null 2>&1; then bazel clean; else echo "bazel not installed; nothing to clean"; fi
