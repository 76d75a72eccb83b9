# The two commands of the README: `make demo` and `make test`. Both set up the environment themselves.
SHELL := /bin/bash
ENV_SCRIPT := tools/make_env.sh
PYTEST_ARGS ?=
DEMO_ARGS ?=
SLURM_DIR ?= /tmp/music-ssl-slurm

.PHONY: env test demo wheelhouse slurm-up slurm-down
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

slurm-up:  ## a one-node Slurm cluster on this machine, state in SLURM_DIR (root; apt-get installs slurm-wlm + munge when missing); prints the SLURM_CONF to export
	@set -o pipefail; venv=$$(bash $(ENV_SCRIPT) | tail -n 1) && "$$venv/bin/python" tests/slurm_cluster.py up --dir "$(SLURM_DIR)"

slurm-down:  ## cancel its jobs and stop the daemons of the cluster in SLURM_DIR (its logs stay in SLURM_DIR/log)
	@set -o pipefail; venv=$$(bash $(ENV_SCRIPT) | tail -n 1) && "$$venv/bin/python" tests/slurm_cluster.py down --dir "$(SLURM_DIR)"
