# The developer's checks, one command: `make check` (CI runs it too, through .ci/run).
# Run inside the venv the README's "Development" section sets up.
PYTHON ?= python

.PHONY: check lint types imports test

check: lint types imports test

lint:  ## ruff: lint and format
	ruff check .
	ruff format --check .

types:  ## mypy: strict on the package; tests with check_untyped_defs ([[tool.mypy.overrides]])
	mypy -p llmgw
	mypy --explicit-package-bases --exclude 'tests/perf/' tests
	mypy tests/perf  # the benchmarks import each other as top-level scripts

imports:  ## import-linter: the boundaries in pyproject.toml [tool.importlinter]
	lint-imports

test:  ## the suite in parallel, with coverage and its floors ([tool.coverage]; lines >= 90 %)
	$(PYTHON) -m pytest -n auto --durations=30 --cov --cov-report=term-missing:skip-covered --cov-report=json:coverage.json
	$(PYTHON) -c 'import json; t = json.load(open("coverage.json"))["totals"]; p = 100 * t["covered_lines"] / t["num_statements"]; print(f"Lines covered: {p:.2f}% (floor 90%)"); raise SystemExit(p < 90)'
