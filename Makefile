# Vigil: one entry point. CI calls `make lint test` (see .ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS        := $(CURDIR)/.tools
VENV         := $(TOOLS)/venv
export ORT_DYLIB_PATH ?= $(TOOLS)/lib/libonnxruntime.so
export CARGO_TERM_COLOR ?= never
DATA         ?= ../shared/datasets
CARGO_TEST   := cargo test --workspace --locked

.PHONY: help setup demo test test-rust test-infra lint fmt bench bench-aws eval build deploy destroy test-localstack clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: ## Install tools into .tools/ (venv with onnxruntime, emulators); skips what is there
	@bash scripts/setup.sh

demo: setup ## Replay the committed hydraulic sample through the edge pipeline over MQTT
	cargo run --locked -q -p vigil-cli --bin vigil -- demo

test: setup test-rust test-infra ## Set up, then run every test

test-rust:
	$(CARGO_TEST)

test-infra: setup ## Terraform fmt, checkov and wiring checks (offline)
	VIGIL_TOOLS_VENV=$(VENV) bash infra/tests/run.sh

lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

bench: setup ## Criterion benchmarks (parse+window, ONNX per window, full pipeline)
	cargo bench --locked -p vigil-cli --bench pipeline

bench-aws: setup ## Release bootstrap under cargo-lambda's Runtime API: DynamoDB units, CPU, latency, cold start (JSON)
	bash scripts/bench-aws.sh

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

clean:
	cargo clean
	rm -rf dist
