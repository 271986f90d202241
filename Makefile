# The two commands of the README.  Each one installs what it needs.
.PHONY: demo test check lint bootstrap kafka-stop schemas

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/citybrain demo

test: bootstrap
	@$(MAKE) --no-print-directory lint
	@scripts/ensure-test-tools.sh
	.venv/bin/python -m pytest --durations=25 $(PYTEST_ARGS)

# The fast tier, no broker: lint, types, then the unit tests (README "Tiers").
check: bootstrap
	@$(MAKE) --no-print-directory lint
	.venv/bin/python -m pytest tests/unit -m unit -q --durations=10 $(PYTEST_ARGS)

lint: bootstrap
	@echo "▸ 代码检查 lint: ruff (pyflakes, isort, bugbear, pyupgrade), then mypy over src/ …"
	.venv/bin/ruff check src tests
	.venv/bin/mypy

kafka-stop: bootstrap
	.venv/bin/citybrain kafka stop

schemas: bootstrap
	.venv/bin/citybrain schemas --write
