#!/usr/bin/env bash
# Idempotent set-up: system prerequisites, then the two virtualenvs (docs/architecture.md).
# PyFlink (protobuf < 6) and TensorFlow (protobuf >= 6.31) cannot share one environment.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); install python3.11 and re-run 'make setup'." >&2
  exit 1
fi

missing=()
if ! java -version 2>&1 | grep -qE 'version "(17|21)' || ! command -v javac >/dev/null 2>&1; then
  missing+=(openjdk-17-jdk-headless)  # javac: infra/jvm/udf is built here
fi
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || missing+=(gcc)  # schemas/_avro.c
has_python_headers() {
  "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}
has_python_headers || missing+=(python3.11-dev)
[ -f .jvm/kafka/.stamp ] || command -v mvn >/dev/null 2>&1 || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "setup: missing ${missing[*]}; install them (e.g. 'sudo apt-get install ${missing[*]}') and re-run 'make setup'." >&2
    exit 1
  fi
fi

# The native Avro decoder (schemas/_avro.c) is compiled against the interpreter's headers.
if ! has_python_headers; then
  echo "setup: the Python 3.11 headers (Python.h) are missing; install them (e.g. 'sudo apt-get install python3.11-dev') and re-run 'make setup'." >&2
  exit 1
fi

# pip, minus the noise of index locations configured on some machines but absent there.
pip_in() {  # venv args...
  local venv=$1; shift
  "$venv/bin/python" -m pip "$@" 2>&1 | { grep -v -e 'is ignored: it is neither' -e 'BuildBackendWarning' || true; }
  return "${PIPESTATUS[0]}"
}

stamp_of() { cat setup.cfg setup.py pyproject.toml infra/setup.sh schemas/_avro*.[ch] | sha256sum | cut -c1-16; }

make_venv() {  # name extras extra-packages...
  local name=$1 extras=$2; shift 2
  local venv=.venv/$name want
  want="$(stamp_of)"
  if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$want" ] && "$venv/bin/python" -c 'import schemas._avro' 2>/dev/null; then
    echo "setup: $venv is up to date"
    return
  fi
  echo "setup: building $venv ([$extras]) — this downloads several hundred MB the first time"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  pip_in "$venv" install -q --upgrade pip setuptools wheel
  pip_in "$venv" install -q -e ".[$extras]" "$@"
  echo "$want" > "$venv/.stamp"
}

make_venv jobs jobs,dev
make_venv trainer trainer,dev
# The local Apache Kafka broker and the Flink Kafka connector, from Maven Central (.jvm/).
bash infra/fetch_jars.sh
echo "setup: done (.venv/jobs, .venv/trainer, .jvm/)"
