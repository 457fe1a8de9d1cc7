.PHONY: install test lint bench
install:
	pip install -e ".[dev]"
test:
	python -m pytest
lint:
	ruff check . && ruff format --check . && mypy
bench:
	python bench/bench_engine.py && python bench/bench_policy.py && python bench/bench_flow.py && python bench/bench_latency.py && python bench/bench_delivery.py
