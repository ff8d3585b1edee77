# The two commands a new user needs (see README):
#   make main   - the main job: evaluate the reference model on LFW-dev and print the table
#   make test   - the test suite
# Both create/reuse the project venv (scripts/env.sh) keyed by requirements/lock.txt.
SHELL := /bin/bash
SHARED ?= $(abspath ../shared)
OUT ?= out

.PHONY: env main test test-fast bench clean
env:
	@bash scripts/env.sh >/dev/null

main: env
	@V=$$(bash scripts/env.sh); mkdir -p $(OUT); \
	$$V/bin/edgeface eval $(SHARED)/models/third_party/mobilefacenet-casia-xiaoccer/068.ckpt \
	  --data $(SHARED)/datasets/lfw-dev --json $(OUT)/eval_reference.json --roc $(OUT)/roc_reference.png

test: env
	@V=$$(bash scripts/env.sh); $$V/bin/python -m pytest -q tests device_tests

test-fast: env
	@V=$$(bash scripts/env.sh); $$V/bin/python -m pytest -q -m "not slow" tests device_tests

# Benchmark every target available here and rewrite the README's table and plot.
bench: env
	@V=$$(bash scripts/env.sh); $$V/bin/python benchmarks/bench_targets.py --update-readme

clean:
	rm -rf $(OUT) .pytest_cache
