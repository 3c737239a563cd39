# hastack: boot the lab fleet, deploy it, run the test suite, tear down.
#   make lab      create .venv, boot the fleet (5 Debian machines, systemd-nspawn),
#                 deploy it over SSH with site.yml (verify included), print its endpoints
#   make test     lint + unit + molecule + integration (deploys and destroys labs)
#   make destroy  remove the fleet (machines, disks, bridges, NAT, sysctl)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all venv lab verify destroy fleet-image test lint unit molecule integration clean checkov checkov-venv

all: lab

$(VENV)/.installed: requirements.txt
	@test "$$(id -u)" = 0 || { echo "run as root: the lab installs packages and services"; exit 1; }
	command -v python3 >/dev/null || { apt-get update -q && apt-get install -y -q python3 python3-venv; }
	python3 -c 'import venv, ensurepip' 2>/dev/null || { apt-get update -q && apt-get install -y -q python3-venv; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q --python $(PY) -r requirements.txt
	touch $@

venv: $(VENV)/.installed

# checkov has pins that conflict with ours: its own venv, built with our uv.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
$(CHECKOV_VENV)/.installed: $(VENV)/.installed
	$(BIN)/uv venv -q --allow-existing --python python3 $(CHECKOV_VENV)
	$(BIN)/uv pip install -q --python $(CHECKOV_VENV)/bin/python checkov==$(CHECKOV_VERSION)
	touch $@

checkov-venv: $(CHECKOV_VENV)/.installed

# checkov over the unit tests' rendered manifests (the render scenario checks
# they are what the templates render now, and runs checkov on its own render).
checkov: checkov-venv
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml --directory tests/unit/fixtures/k8s/rendered

LAB_INVENTORY := inventories/lab
lab: venv
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/fleet.yml
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) site.yml
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/lab_info.yml

verify: venv
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/verify.yml

destroy: venv
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/fleet_destroy.yml

lint: venv
	$(BIN)/yamllint -s .
	$(BIN)/ruff check .
	$(BIN)/ansible-lint --profile production

# Unit tests run a private PostgreSQL 15 and Redis/Sentinel (binaries only),
# promtool and amtool (the alert rules and routes), a private Prometheus, the
# postgres and redis exporters (the Kubernetes sidecars' settings) and
# pgBackRest (it parses the rendered config), HAProxy (the app_backend role's
# haproxy.cfg on loopback). A test whose binary is missing
# skips, so each one it needs is listed here: CI starts from a clean machine.
UNIT_PACKAGES := postgresql-15 redis-server redis-sentinel prometheus prometheus-alertmanager haproxy \
	prometheus-postgres-exporter prometheus-redis-exporter pgbackrest
unit: venv
	dpkg -s $(UNIT_PACKAGES) >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(UNIT_PACKAGES); }
	$(BIN)/pytest -q tests/unit

# Each scenario makes its own machines on its own address block, then removes
# them: patroni_postgres and redis_sentinel boot a fleet of three Debian
# machines (role fleet: hsmolpg on 198.19.64.0/20, hsmolrd on 198.19.80.0/20),
# app_backend one of four (hsmolap on 198.19.96.0/20: node-a/b/c with etcd,
# Patroni and Redis from prepare.yml, lb-1) and prometheus_alertmanager one
# of four (hsmolpm on 198.19.112.0/20: mon, node-a/b/c), in create.yml, deploy
# and verify over SSH and destroy it in destroy.yml (also after a failure);
# the render scenario renders the Kubernetes manifests and validates them
# (kubernetes-validate, checkov, semantic filters; no cluster). Scenarios run
# MOLECULE_JOBS at a time (own blocks and fleet names, no drills, so no
# timing to disturb; prerun is off in every scenario: the collection comes
# from collections/), each into reports/molecule/<scenario>.log; a failed
# one's log is printed.
# `make test` runs the scenarios the integration lab does not cover: the
# Kubernetes render, EKS on the emulator, and the PostgreSQL and Redis roles
# on their own machines (their verify checks on the members what site.yml's
# lab does not: scram, refused passwords, REST auth, file modes, the
# packaged daemons off, Redis's write-loss guard). app_backend (the stack
# but monitoring, on four machines) and prometheus_alertmanager (the
# monitoring, on four) deploy what the integration lab deploys and verifies
# with every role together (test_10_lab, test_65_app, test_70_alerts);
# `make molecule` runs them too.
MOLECULE_JOBS ?= 3
MOLECULE_SCENARIOS ?= $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
MOLECULE_CI_SCENARIOS := render eks_multi_az patroni_postgres redis_sentinel
# The fleet's Debian image, built once before the scenarios that boot fleets
# (and reused by the integration suite's fleet); a no-op when it is cached.
fleet-image: venv
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/fleet.yml --tags fleet_install,fleet_image

molecule: venv checkov-venv fleet-image
	mkdir -p reports/molecule
	printf '%s\n' $(MOLECULE_SCENARIOS) | \
	  xargs -P $(MOLECULE_JOBS) -I{} sh -c '\
	    start=$$(date +%s); \
	    if $(BIN)/molecule test -s {} > reports/molecule/{}.log 2>&1; then \
	      echo "molecule {}: passed in $$(( $$(date +%s) - start )) s"; \
	    else \
	      echo "molecule {}: FAILED after $$(( $$(date +%s) - start )) s; its log ends with:"; \
	      tail -n 80 reports/molecule/{}.log; exit 255; \
	    fi'

integration: venv
	$(BIN)/pytest -q --durations=0 tests/integration

# CI: a unit test that skips (a binary missing) fails instead (tests/unit/conftest.py).
test: export HASTACK_FORBID_SKIPS = 1
test: lint unit
	$(MAKE) molecule MOLECULE_SCENARIOS='$(MOLECULE_CI_SCENARIOS)' MOLECULE_JOBS=4
	$(MAKE) integration

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache build
