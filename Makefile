# The two commands: `make up` (set up and run the evaluation appliance) and `make test`.
PYTHON ?= python3
VENV := .venv
APPLIANCE := $(VENV)/bin/appliance
STAMP := $(VENV)/.installed

.PHONY: up down status backup restore test test-fast system-packages test-system-packages venv render check clean-state

up: system-packages venv
	$(APPLIANCE) up

down:
	@if [ -x $(APPLIANCE) ]; then $(APPLIANCE) down; else echo "nothing to stop (no venv)"; fi

status: venv
	$(APPLIANCE) status

# An encrypted backup into the restic repository (backup.repository; ./backups by default).
backup: venv
	$(APPLIANCE) backup

# Puts the latest backup (or SNAPSHOT=id) into an empty var/, the appliance stopped.
restore: venv
	$(APPLIANCE) restore $(SNAPSHOT)

check: venv
	$(APPLIANCE) check

render: venv
	$(APPLIANCE) render

test: test-system-packages venv
	$(VENV)/bin/python -m pytest

# The fast tier: pure rules and the module's callbacks (and the console) without any service
# running; under a minute. `make test` runs these too (pyproject's testpaths is all of tests/).
test-fast: venv
	$(VENV)/bin/python -m pytest tests/unit tests/fast

system-packages:
	@scripts/install-system-packages

test-system-packages:
	@scripts/install-system-packages --with-test-packages

venv: $(STAMP)

# constraints.txt pins the whole dependency tree; pyproject.toml pins the direct dependencies.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# Removes all local state (accounts, rooms, media, secrets) of the evaluation appliance.
clean-state: down
	rm -rf var

# Every benchmark in bench/ in turn (`make bench ONLY=rooms` for one), then one summary table;
# fails only if a benchmark could not run (bench/README.md).
.PHONY: bench bench-system-packages
bench: bench-system-packages venv
	$(VENV)/bin/python bench/run_all.py $(if $(ONLY),--only $(ONLY))

bench-system-packages:
	@scripts/install-system-packages --with-bench-packages
