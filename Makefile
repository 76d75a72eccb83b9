# The two commands of the README: `make demo` and `make test`. Both set up the environment themselves.
SHELL := /bin/bash
ENV_SCRIPT := tools/make_env.sh
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: env test demo wheelhouse
env:  ## create or reuse this checkout's venv (<clone>/.venv over the shared pinned stack); its directory is the last line printed
	@bash $(ENV_SCRIPT)

test:  ## set up, then run the whole test suite (slow tests included)
	@set -o pipefail; venv=$$(bash $(ENV_SCRIPT) | tail -n 1) && \
	  WANDB_MODE=offline "$$venv/bin/python" -m pytest $(PYTEST_ARGS)

demo:  ## set up, then run the whole pipeline on the embedded demo corpus
	@set -o pipefail; venv=$$(bash $(ENV_SCRIPT) | tail -n 1) && \
	  PATH="$$venv/bin:$$PATH" "$$venv/bin/python" -m music_ssl.cli.demo $(DEMO_ARGS)

wheelhouse:  ## cp312 wheels the GPU device run needs beyond its image (benchmarks/wheelhouse.txt) + this package, into .whl/
	@set -o pipefail; venv=$$(bash $(ENV_SCRIPT) | tail -n 1) && bash benchmarks/wheelhouse.sh "$$venv/bin/python" .whl
