#!/usr/bin/env bash
# Idempotent project setup for gpfl_tff; run by `make setup`, `make demo` and `make test`.
#   1. checks for Python 3.11;
#   2. creates .venv/ and installs requirements.txt, then tensorflow-federated with
#      --no-deps (TFF pins jaxlib==0.4.14, which the package index does not serve);
#      skipped when .venv/.gpfl_setup_stamp matches;
#   3. installs Debian's Bazel (bazel-bootstrap, bazel-platforms) when missing;
#   4. prepares the default dataset (skip with GPFL_SKIP_DATA=1).
set -euo pipefail

TFF_VERSION="0.87.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
STAMP="$VENV/.gpfl_setup_stamp"
PIP_FLAGS=(-q --disable-pip-version-check)

die() {
  echo "error: $*" >&2
  exit 2
}

log() {
  echo "[setup] $*"
}

sha256_of() {
  sha256sum "$@" | awk '{print $1}' | sha256sum | awk '{print $1}'
}

# ---------------------------------------------------------------- 1. Python 3.11
is_py311() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' >/dev/null 2>&1
}

PYTHON=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then
    PYTHON="$(command -v "$candidate")"
    break
  fi
done
[ -n "$PYTHON" ] || die "Python 3.11 is required (no python3.11, and python3 is not 3.11); TensorFlow Federated 0.87 needs Python 3.11."

# ---------------------------------------------------------------- 2. virtualenv
if [ -x "$VENV/bin/python" ] && ! is_py311 "$VENV/bin/python"; then
  die "$VENV exists but is not a Python 3.11 environment; remove it and rerun."
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment in .venv/ with $PYTHON"
  "$PYTHON" -m venv "$VENV"
  rm -f "$STAMP"
fi

WANT_STAMP="$(sha256sum requirements.txt | awk '{print $1}') tensorflow-federated==$TFF_VERSION"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ]; then
  log "Python packages up to date (stamp matches)"
else
  log "installing requirements.txt into .venv/ (a few minutes on a fresh machine)"
  "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" -r requirements.txt
  log "installing tensorflow-federated==$TFF_VERSION (--no-deps)"
  "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" --no-deps "tensorflow-federated==$TFF_VERSION"
  log "checking that tensorflow_federated imports"
  TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" -c 'import tensorflow_federated' \
    || die "tensorflow_federated does not import in .venv/"
  echo "$WANT_STAMP" >"$STAMP"
fi

# ---------------------------------------------------------------- 3. Bazel
run_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    return 1
  fi
}

apt_install() {
  log "installing Debian packages: $*"
  command -v apt-get >/dev/null 2>&1 || return 1
  run_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
  run_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || return 1
}

if ! command -v bazel >/dev/null 2>&1; then
  apt_install bazel-bootstrap bazel-platforms \
    || die "bazel is not installed and 'apt-get install bazel-bootstrap bazel-platforms' failed (needs root or sudo and a Debian package mirror)."
  command -v bazel >/dev/null 2>&1 || die "bazel is still not on PATH after installing bazel-bootstrap."
fi
if [ ! -d /usr/share/bazel/tools/platforms ]; then
  apt_install bazel-platforms \
    || die "/usr/share/bazel/tools/platforms is missing and 'apt-get install bazel-platforms' failed."
  [ -d /usr/share/bazel/tools/platforms ] || die "/usr/share/bazel/tools/platforms is still missing after installing bazel-platforms."
fi
log "bazel: $(command -v bazel)"

# ---------------------------------------------------------------- 4. dataset
# The vocabulary size of the `small` model preset, which `make demo` uses.
DATA_ARGS=(--dataset=shakespeare --group_by=genre --vocab_size=4000)
DATA_STAMP="$ROOT/data/cache/.gpfl_setup_data_stamp"
if [ "${GPFL_SKIP_DATA:-0}" = "1" ]; then
  log "GPFL_SKIP_DATA=1: not preparing the dataset"
elif [ ! -f data/prepare.py ]; then
  log "notice: data/prepare.py does not exist yet; not preparing the dataset"
else
  # Re-run when the data code changes; data.prepare itself reuses its cached output.
  WANT_DATA="$(sha256_of data/*.py) ${DATA_ARGS[*]}"
  if [ -f "$DATA_STAMP" ] && [ "$(cat "$DATA_STAMP")" = "$WANT_DATA" ]; then
    log "dataset already prepared (stamp matches)"
  else
    log "preparing dataset: python -m data.prepare ${DATA_ARGS[*]}"
    "$VENV/bin/python" -m data.prepare "${DATA_ARGS[@]}"
    mkdir -p "$(dirname "$DATA_STAMP")"
    echo "$WANT_DATA" >"$DATA_STAMP"
  fi
fi

log "done"
