#!/usr/bin/env bash
# Install everything the tests need (Python packages, Node packages, Debian's Chromium) and run
# the dependency audit, the linters, the type checker and the whole test suite.
source "$(dirname "$0")/_venv.sh" "test"
if [ -f widget/package-lock.json ]; then
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  (cd widget && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
# The store's tests use the real PostgreSQL at 127.0.0.1:5432 (Debian's package, trust auth on
# loopback, database `test`): start its cluster when it is not answering.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done
fi
# nginx, for tests/deploy/test_nginx.py (which skips without it); the package lists are
# refreshed only when the install fails without a refresh.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get"
  $APT install -y -qq nginx >/dev/null 2>&1 \
    || { $APT update -qq && $APT install -y -qq nginx >/dev/null; } \
    || echo "nginx could not be installed: tests/deploy/test_nginx.py will skip" >&2
fi
# Redis at 127.0.0.1:6379, for tests/bus (which skip without it): started when it is not
# answering, installed first when it is missing.
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get"
    $APT install -y -qq redis-server >/dev/null 2>&1 \
      || { $APT update -qq && $APT install -y -qq redis-server >/dev/null; } \
      || echo "redis-server could not be installed: tests/bus will skip" >&2
  fi
  if command -v redis-server >/dev/null 2>&1; then
    $SUDO mkdir -p /var/lib/redis /var/log/redis
    $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log \
      || echo "redis-server did not start: tests/bus will skip" >&2
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break
      sleep 0.2
    done
  fi
fi
# Known vulnerabilities in the locked Python and npm dependencies (a notice when offline).
bash scripts/audit.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
