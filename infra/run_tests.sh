#!/usr/bin/env bash
# `make test`: run each suite in its own venv (PyFlink and TensorFlow cannot share one), keep going
# after a failing suite, then print one combined closing line and fail if any suite failed.
set -uo pipefail
cd "$(dirname "$0")/.."
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT

status=0
run_suite() {  # name python paths...
  local name=$1 python=$2; shift 2
  echo "=== $name suite ($python)"
  if [ ! -x "$python" ]; then
    echo "test: $python is missing; run 'make setup' first" >&2
    status=1
    return
  fi
  local paths=() arg
  for arg in "$@"; do  # suites not yet present in this checkout are skipped, not an error
    case $arg in tests/*) [ -e "$arg" ] && paths+=("$arg") ;; *) paths+=("$arg") ;; esac
  done
  "$python" -m pytest "${paths[@]}" --junitxml="$reports/$name.xml" ${PYTEST_EXTRA:-}
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "=== $name suite FAILED (pytest exit $rc)"
    status=1
  fi
}

run_suite jobs .venv/jobs/bin/python tests/schemas tests/common tests/jobs tests/infra tests/e2e tests/test_docs.py tests/test_layout.py tests/test_cli_conventions.py "$@"
run_suite trainer .venv/trainer/bin/python tests/trainer "$@"

python3 - "$reports" <<'PY'
import sys, pathlib, xml.etree.ElementTree as ET
tests = failures = errors = skipped = 0
for report in pathlib.Path(sys.argv[1]).glob("*.xml"):
    for suite in ET.parse(report).getroot().iter("testsuite"):
        tests += int(suite.get("tests", 0)); failures += int(suite.get("failures", 0))
        errors += int(suite.get("errors", 0)); skipped += int(suite.get("skipped", 0))
passed = tests - failures - errors - skipped
print(f"total: {passed} passed, {failures + errors} failed, {skipped} skipped")
PY
exit $status
