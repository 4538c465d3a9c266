# LLM OS — `make help` shows the way in.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen
export UV

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "; printf "Usage: make TARGET\n\n"} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	hack/install-uv

.PHONY: sync
sync: $(UV) ## Install the workspace (operator, runtime, dev tools) into .venv
	$(UV) sync --frozen

.PHONY: demo
demo: sync ## Train, evaluate and serve examples/shakespeare locally, then ask it a question
	hack/seed-dataset-cache
	$(RUN) llmos run -f examples/shakespeare --ask "ROMEO:"

.PHONY: test
test: sync verify test-env ## Lint, verify the CRDs, bring up the local cluster, run the whole suite
	$(RUN) pytest --local-cluster

.PHONY: test-env
test-env: sync ## Build and start what the cluster tests need: cluster, images, helm (root)
	hack/test-env

.PHONY: test-local
test-local: sync ## The suite without the cluster tests (no root needed)
	$(RUN) pytest -m "not cluster"

.PHONY: cluster-up
cluster-up: sync ## Start the local Kubernetes cluster (root; builds what is missing)
	hack/cluster up

.PHONY: cluster-down
cluster-down: ## Stop the local cluster, leaving nothing behind
	hack/cluster down

.PHONY: images
images: sync ## Build the images and load them into the local cluster
	hack/images all

.PHONY: lint
lint: sync ## ruff and mypy
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

.PHONY: verify
verify: lint verify-crds ## Everything a pull request must pass before tests

.PHONY: update-crds
update-crds: sync ## Regenerate crds/ from the API types
	hack/update-crds

.PHONY: verify-crds
verify-crds: sync ## Fail when crds/ is stale
	hack/verify-crds

.PHONY: bench
bench: sync ## Run the benchmarks (training MFU and DDP scaling, serving throughput and latency)
	$(RUN) python bench/train.py
	$(RUN) python bench/serve.py
	KUBECONFIG=$${KUBECONFIG:-/var/lib/llmos-cluster/admin.kubeconfig} $(RUN) python bench/operator_reaction.py

.PHONY: clean
clean: ## Remove local-mode state and caches (not the venv)
	rm -rf .llmos .mypy_cache .ruff_cache .pytest_cache
