# Vigil: one entry point. CI calls `make lint test` (see .ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS        := $(CURDIR)/.tools
VENV         := $(TOOLS)/venv
export ORT_DYLIB_PATH ?= $(TOOLS)/lib/libonnxruntime.so
export CARGO_TERM_COLOR ?= never
DATA         ?= ../shared/datasets
CARGO_TEST   := cargo test --workspace --locked

.PHONY: help setup demo test test-rust test-infra lint fmt bench eval build deploy destroy test-localstack local clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: ## Install tools into .tools/ (venv with onnxruntime, emulators); skips what is there
	@bash scripts/setup.sh

demo: setup ## Replay the committed hydraulic sample through the edge pipeline over MQTT
	cargo run --locked -q -p vigil-cli --bin vigil -- demo

test: setup test-rust test-infra ## Set up, then run every test

# tests/tests/local.rs runs the ingest bootstrap under cargo-lambda's emulator: a debug build
# (the release zip with cargo-lambda + zig costs minutes on 2 cores).
test-rust:
	cargo build --locked -q -p vigil-ingest --bin bootstrap
	$(CARGO_TEST)

test-infra: setup ## Terraform fmt, checkov and wiring checks (offline)
	VIGIL_TOOLS_VENV=$(VENV) bash infra/tests/run.sh

lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

bench: setup ## Criterion benchmarks (parse+window, ONNX per window, full pipeline)
	cargo bench --locked -p vigil-edge --bench pipeline

eval: setup ## Every evaluation on ../shared/datasets (last line of each: JSON figures)
	cargo build --locked -q -p vigil-cli --bin vigil
	for t in cooler valve pump accumulator; do target/debug/vigil eval hydraulic --target $$t --data $(DATA)/hydraulic | tail -n1; done
	for t in rmg941 cwru nab; do target/debug/vigil eval $$t --data $(DATA)/$$t | tail -n1; done

build: setup ## Lambda zips for arm64 and x86_64 in dist/ (cargo-lambda + zig)
	bash scripts/package-lambda.sh arm64
	bash scripts/package-lambda.sh x86_64

deploy: build ## Build, then terraform apply in infra/envs/aws (see docs/deploy.md)
	cd infra/envs/aws && terraform init && terraform apply

destroy: ## terraform destroy in infra/envs/aws
	cd infra/envs/aws && terraform init && terraform destroy

test-localstack: setup ## The AWS integration tests against a LocalStack at $$VIGIL_TEST_ENDPOINT
	@test -n "$$VIGIL_TEST_ENDPOINT" || { echo "set VIGIL_TEST_ENDPOINT=http://localhost:4566"; exit 2; }
	cargo test --locked -p vigil-tests

local: setup ## The deployed cloud path on this machine: IoT Core stand-in, Lambda emulator, DynamoDB Local, moto (docs/local.md)
	@if [ -f dist/ingest-x86_64.zip ]; then \
	  rm -rf target/local/task && mkdir -p target/local/task && cd target/local/task && unzip -q ../../../dist/ingest-x86_64.zip; \
	  echo "local: the bootstrap of dist/ingest-x86_64.zip (make build)"; \
	else \
	  cargo build --locked -q -p vigil-ingest --bin bootstrap; \
	  echo "local: a debug bootstrap (run make build first to use the Lambda package)"; \
	fi
	VIGIL_LOCAL_BOOTSTRAP=$$( [ -f target/local/task/bootstrap ] && [ -f dist/ingest-x86_64.zip ] && echo $(CURDIR)/target/local/task/bootstrap || echo $(CURDIR)/target/debug/bootstrap ) \
	  cargo run --locked -q -p vigil-tests --bin vigil-local

clean:
	cargo clean
	rm -rf dist
