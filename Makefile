# The two commands of the README.  Each one installs what it needs.
.PHONY: demo test bootstrap kafka-stop schemas

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/citybrain demo

test: bootstrap
	@scripts/ensure-test-tools.sh
	.venv/bin/python -m pytest $(PYTEST_ARGS)

kafka-stop: bootstrap
	.venv/bin/citybrain kafka stop

schemas: bootstrap
	.venv/bin/citybrain schemas --write
