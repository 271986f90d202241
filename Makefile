# The two commands of the README.  Each one installs what it needs.
.PHONY: demo test lint bootstrap kafka-stop schemas

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/citybrain demo

test: bootstrap
	@$(MAKE) --no-print-directory lint
	@scripts/ensure-test-tools.sh
	.venv/bin/python -m pytest $(PYTEST_ARGS)

lint: bootstrap
	@echo "▸ 代码检查 lint: ruff (pyflakes, isort, bugbear, pyupgrade), then mypy over src/ …"
	.venv/bin/ruff check src tests
	.venv/bin/mypy

kafka-stop: bootstrap
	.venv/bin/citybrain kafka stop

schemas: bootstrap
	.venv/bin/citybrain schemas --write
