# The two commands a new user needs (see README):
#   make main   - the main job: reference model -> LFW-dev eval -> channel pruning (retrained) ->
#                 export to every target available here (fp32/fp16/int8, each verified) ->
#                 benchmark -> table + plot in $(OUT)/bench
#   make test   - the linter (ruff check, configured in pyproject.toml) and the test suite
# Both create/reuse the project venv (scripts/env.sh) keyed by requirements/lock.txt.
SHELL := /bin/bash
SHARED ?= $(abspath ../shared)
OUT ?= out
MODEL ?= $(SHARED)/models/third_party/mobilefacenet-casia-xiaoccer/068.ckpt
PRUNE_KEEP ?= 0.75
PRUNE_ITERS ?= 60

.PHONY: env main eval prune bench-main ship test test-fast lint bench clean
env:
	@bash scripts/env.sh >/dev/null

main: eval prune bench-main ship

eval: env
	@V=$$(bash scripts/env.sh); mkdir -p $(OUT); \
	$$V/bin/edgeface eval $(MODEL) --data $(SHARED)/datasets/lfw-dev --json $(OUT)/eval_reference.json --roc $(OUT)/roc_reference.png

prune: env
	@V=$$(bash scripts/env.sh); mkdir -p $(OUT); \
	$$V/bin/edgeface prune $(MODEL) --level channel --keep $(PRUNE_KEEP) --retrain-iters $(PRUNE_ITERS) --out $(OUT)/pruned_channel.safetensors

# Exports MODEL, our trained `default` model and the pruned model to every target this machine can build and run (each
# export verified against its source: cosine on real faces + LFW-dev through its runtime),
# then measures size, cold start, latency, throughput, memory and accuracy per target.
bench-main: env
	@V=$$(bash scripts/env.sh); \
	$$V/bin/edgeface bench $(MODEL) default $(OUT)/pruned_channel.safetensors --out $(OUT)/bench --name main

# The shipped `default` model's int8 bundles, made by their export recipes (PT2E int8 + quantization-aware
# training), timed on one thread against MODEL's bundles for the same targets in the same run.
ship: env
	@V=$$(bash scripts/env.sh); mkdir -p $(OUT)/ship; \
	for r in x86-openvino-int8-qat android-tflite-int8-qat; do \
	  [ -f $(OUT)/ship/default-$$r/edgeface.json ] || $$V/bin/edgeface export default --recipe $$r --out $(OUT)/ship/default-$$r --quiet || exit 1; \
	done; \
	$$V/bin/edgeface bench $(OUT)/ship/default-x86-openvino-int8-qat $(OUT)/ship/default-android-tflite-int8-qat $(MODEL) \
	  --targets openvino-int8,tflite-int8 --threads 1 --throughput-batch 8 --out $(OUT)/ship --name ship

test: env
	@V=$$(bash scripts/env.sh); $$V/bin/ruff check . && $$V/bin/python -m pytest -q tests device_tests

test-fast: env
	@V=$$(bash scripts/env.sh); $$V/bin/ruff check . && $$V/bin/python -m pytest -q -m "not slow" tests device_tests

lint: env
	@V=$$(bash scripts/env.sh); $$V/bin/ruff check .

# Benchmark every target available here and rewrite the table and plot in docs/results/targets.md.
bench: env
	@V=$$(bash scripts/env.sh); $$V/bin/python benchmarks/bench_targets.py --update-docs

clean:
	rm -rf $(OUT) .pytest_cache
