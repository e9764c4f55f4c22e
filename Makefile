# The two commands of the README: `make run` and `make test`. Both set up what they need.
.PHONY: run test bench bench-quick

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

bench-quick:
	bash scripts/bench.sh --quick
