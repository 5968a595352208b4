# gpfl_tff: group personalized federated learning with TensorFlow Federated.
#   make setup  - create .venv/, install Bazel if missing, prepare the default dataset
#   make demo   - run every method on the embedded Shakespeare data
#   make test   - run all Bazel tests (bazel test //...)
#   make clean  - bazel clean (keeps .venv/ and data/cache/)
SHELL := /bin/bash
VENV_BIN := $(CURDIR)/.venv/bin
# Extra flags for `bazel test`, e.g. make test BAZEL_FLAGS="--test_output=all".
BAZEL_FLAGS ?=

.PHONY: setup demo test clean

setup:
	bash tools/setup.sh

# The demo: GroupPerFL against its controls and the reference rows on the
# embedded Shakespeare data, sized to run in under 5 minutes on 2 cores (see
# README: the full comparison is `--methods=all` on every report client).
DEMO_METHODS := fl,fl_matched,perfl,perfl_matched,groupfl,groupperfl,unigram,group_unigram
demo: setup
	.venv/bin/python -m experiments.run_group_personalization \
	  --dataset=shakespeare --group_by=genre --methods=$(DEMO_METHODS) \
	  --eval_clients_per_group=20 --curve_clients=20 \
	  --output_dir=results/demo

# The venv's bin goes first on PATH so py_test targets run under its python3.
test: setup
	PATH="$(VENV_BIN):$$PATH" bazel test //... $(BAZEL_FLAGS)

clean:
	@if command -v bazel >/dev/null 2>&1; then bazel clean; else echo "bazel not installed; nothing to clean"; fi
