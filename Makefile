# gpfl_tff: group personalized federated learning with TensorFlow Federated.
#   make setup  - create .venv/, install Bazel if missing, prepare the default dataset
#   make demo   - GroupPerFL against FL, PerFL, GroupFL and unigram rows on the embedded Shakespeare data (tuned flags, lighter)
#   make test   - run all Bazel tests (bazel test //...)
#   make clean  - bazel clean (keeps .venv/ and data/cache/)
SHELL := /bin/bash
VENV_BIN := $(CURDIR)/.venv/bin
# Extra flags for `bazel test`, e.g. make test BAZEL_FLAGS="--test_output=all".
BAZEL_FLAGS ?=

.PHONY: setup demo test clean

setup:
	bash tools/setup.sh

# The demo: GroupPerFL against FL, PerFL and GroupFL and the two unigram
# reference rows on the embedded Shakespeare data, with the tuned flag file of
# docs/RESULTS.md in a lighter variant sized for under 5 minutes on 2 cores:
# 40 global and 10 group rounds instead of 100 and 20, and the same 15 report
# clients per group for every method (the full comparison is in README).
DEMO_FLAGS := --flagfile=experiments/configs/shakespeare.flags \
  --global_rounds=40 --group_rounds=10 \
  --methods=fl,perfl,groupfl,groupperfl,unigram,group_unigram \
  --eval_clients_per_group=15 --curve_clients=20
demo: setup
	.venv/bin/python -m experiments.run_group_personalization $(DEMO_FLAGS) \
	  --output_dir=results/demo

# The venv's bin goes first on PATH so py_test targets run under its python3.
test: setup
	PATH="$(VENV_BIN):$$PATH" bazel test //... $(BAZEL_FLAGS)

clean:
	@if command -v bazel >/dev/null 2>&1; then bazel clean; else echo "bazel not installed; nothing to clean"; fi
