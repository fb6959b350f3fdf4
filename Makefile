# Set-up, local stack, tests, lint and benchmarks. Two virtualenvs (docs/architecture.md):
# .venv/jobs for PyFlink, Kafka, Redis and the join; .venv/trainer for TensorFlow.
JOBS_PY    := .venv/jobs/bin/python
TRAINER_PY := .venv/trainer/bin/python
PYTEST_ARGS ?=

.PHONY: help setup demo up down status clean-state flink-up flink-down flink-submit test test-jobs test-trainer lint bench soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup:  ## create .venv/jobs and .venv/trainer (idempotent; installs Java 17 / redis-server as root if missing)
	@bash infra/setup.sh

demo: setup  ## the whole loop, live, for DEMO_MINUTES (3): generator -> Kafka -> join -> samples -> trainer sidecar -> versions
	@$(JOBS_PY) -m infra.demo

up: setup  ## start the local broker + redis-server and create the topics
	$(JOBS_PY) -m infra.local up

down:  ## stop the local stack (its topics, checkpoints and model registry stay in .state/ for the next up)
	$(JOBS_PY) -m infra.local down

clean-state:  ## delete the local stack's data in .state/ (topics, offsets, checkpoints, registry); refuses while it runs
	$(JOBS_PY) -m infra.local clean-state

status:  ## show the local stack's addresses and health
	$(JOBS_PY) -m infra.local status

flink-up: setup  ## start the local Flink session cluster (JobManager + TaskManager, web UI on 127.0.0.1:8081)
	$(JOBS_PY) -m infra.local flink-up

flink-down:  ## stop the local Flink session cluster
	$(JOBS_PY) -m infra.local flink-down

flink-submit:  ## flink run the sample join on the session cluster (CONFIG=..., FROM=checkpoint to resume)
	$(JOBS_PY) -m infra.local flink-submit $(if $(CONFIG),--job-config $(CONFIG)) $(if $(FROM),--from-checkpoint $(FROM))

test: setup  ## every suite, each in its own venv; fails if any fails
	@bash infra/run_tests.sh $(PYTEST_ARGS)

test-jobs:  ## schemas, common, jobs, infra, end-to-end, docs and layout suites (.venv/jobs)
	$(JOBS_PY) -m pytest tests/schemas tests/common tests/jobs tests/infra tests/e2e tests/test_docs.py tests/test_layout.py tests/test_cli_conventions.py $(PYTEST_ARGS)

test-trainer:  ## trainer suite (.venv/trainer)
	$(TRAINER_PY) -m pytest tests/trainer $(PYTEST_ARGS)

lint:  ## ruff and mypy on the packages
	$(JOBS_PY) -m ruff check schemas common devstack jobs infra trainer tests
	$(JOBS_PY) -m mypy schemas common devstack jobs infra
	$(TRAINER_PY) -m mypy trainer

bench: setup  ## every benchmark in one run (docs/performance.md): one table, bench-results.json; BENCH_ARGS='--only codec'
	$(JOBS_PY) -m infra.bench $(BENCH_ARGS)

soak:  ## generator -> embedded runtime -> samples at a fixed rate on its own services; SOAK_ARGS='--duration 10m --rate 500'
	$(JOBS_PY) -m jobs.bench.soak $(SOAK_ARGS)

clean:  ## remove caches and benchmark data (keeps the venvs and .state/: make clean-state deletes that)
	rm -rf .bench .pytest_cache .mypy_cache .ruff_cache .hypothesis
	@if [ -d .state ]; then echo "kept .state/ (the local stack's topics, checkpoints and registry): make clean-state deletes it"; fi
