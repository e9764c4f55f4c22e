#!/usr/bin/env bash
# Known vulnerabilities in what sidechat ships: the locked Python dependencies (pip-audit, against
# requirements.lock) and the widget's npm packages (npm audit, against widget/package-lock.json;
# dev dependencies included, because esbuild bundles them into sidechat/static/widget.js).
# Any known vulnerability fails, whatever its severity, unless its id is in the ignore lists
# below with a comment saying why. When a vulnerability database cannot be reached (offline,
# a registry mirror without the audit endpoints) the check prints a notice and is skipped:
# CI never fails for the network. SIDECHAT_AUDIT=off skips both (python or npm: only that one).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${AUDIT_PYTHON:-.venv/bin/python}"
# Ignored advisories (PYSEC-/GHSA-/CVE- ids), each with the reason. None today.
PIP_IGNORE=()
NPM_IGNORE=()

if [ "${SIDECHAT_AUDIT:-on}" = off ]; then
  echo "notice: SIDECHAT_AUDIT=off: dependency audits skipped"
  exit 0
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
status=0

audit_python() {
  # pip-audit asks PyPI's JSON API (pypi.org/pypi/NAME/VERSION/json) package by package: probe
  # it once first, so that an unreachable or blackholed network costs seconds, not minutes.
  if ! "$PY" - <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen("https://pypi.org/pypi/pip-audit/2.10.1/json", timeout=10) as r:
        sys.exit(0 if "vulnerabilities" in json.load(r) else 1)
except Exception:
    sys.exit(1)
PY
  then
    echo "notice: PyPI's vulnerability data (pypi.org/pypi/.../json) cannot be reached: pip-audit skipped"
    return 0
  fi
  local ignore=()
  for id in ${PIP_IGNORE[@]+"${PIP_IGNORE[@]}"}; do ignore+=(--ignore-vuln "$id"); done
  timeout 600 "$(dirname "$PY")/pip-audit" -r requirements.lock --no-deps --disable-pip \
    --progress-spinner off --timeout 15 -f json -o "$TMP/pip.json" ${ignore[@]+"${ignore[@]}"} \
    2>"$TMP/pip.err" >/dev/null
  "$PY" scripts/_audit_verdict.py pip "$TMP/pip.json" ${PIP_IGNORE[@]+"${PIP_IGNORE[@]}"}
  case $? in
    1) return 1 ;;
    2) tail -3 "$TMP/pip.err" | sed 's/^/  pip-audit: /' ;;
  esac
  return 0
}

audit_widget() {
  if [ ! -f widget/package-lock.json ] || ! command -v npm >/dev/null 2>&1; then
    echo "notice: no widget/package-lock.json or no npm: npm audit skipped"
    return 0
  fi
  (cd widget && timeout 300 npm audit --json --fetch-timeout=20000 --fetch-retries=1 \
    >"$TMP/npm.json" 2>/dev/null)
  "$PY" scripts/_audit_verdict.py npm "$TMP/npm.json" ${NPM_IGNORE[@]+"${NPM_IGNORE[@]}"}
  [ $? = 1 ] && return 1
  return 0
}

WHICH="${SIDECHAT_AUDIT:-on}"
if [ "$WHICH" != npm ]; then audit_python || status=1; fi
if [ "$WHICH" != python ]; then audit_widget || status=1; fi
exit $status
