#!/usr/bin/env bash
# The benchmark suite (`make bench`; `make bench-quick` for the smoke run): sidechat against the
# seed's Express proxy and a naive FastAPI proxy. Writes BENCHMARKS.md and bench/results/.
source "$(dirname "$0")/_venv.sh" "bench"
exec .venv/bin/python -m bench.run "$@"
