# The two commands of the README.  Each one installs what it needs.
.PHONY: demo test check lint bootstrap kafka-stop schemas docs

# make test runs whole test files on this many processes (pytest-xdist, --dist loadfile:
# a file's module fixtures — its worker, its broker — stay in one process). One Kafka
# broker, started by the controller, serves every process (tests/conftest.py). The suite
# mostly waits — on worker processes, brokers and two minute-long outages — so four
# processes fit a two-core box; TEST_PROCESSES=0 runs it in one process.
# --no-loadscope-reorder: the files go out longest first (tests/scheduling.py), not by how
# many tests each has (xdist's default put the few-test chaos files last, on the tail).
TEST_PROCESSES ?= 4

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/citybrain demo

test: bootstrap
	@$(MAKE) --no-print-directory lint
	@scripts/ensure-test-tools.sh
	.venv/bin/python -m pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

# The fast tiers, no broker: lint, types, then the unit and functional tests (README "Tiers").
check: bootstrap
	@$(MAKE) --no-print-directory lint
	.venv/bin/python -m pytest -n $(TEST_PROCESSES) tests/unit tests/functional -q --durations=10 $(PYTEST_ARGS)

lint: bootstrap
	@echo "▸ 代码检查 lint: ruff (pyflakes, isort, bugbear, pyupgrade), then mypy over src/ …"
	.venv/bin/ruff check src tests
	.venv/bin/mypy

kafka-stop: bootstrap
	.venv/bin/citybrain kafka stop

schemas: bootstrap
	.venv/bin/citybrain schemas --write

# docs/architecture.md's package picture, regenerated from the imports (a unit test checks it)
docs: bootstrap
	.venv/bin/citybrain layout --write
