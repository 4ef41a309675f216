# Vigil: one entry point. CI calls `make lint test` (see .ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS        := $(CURDIR)/.tools
VENV         := $(TOOLS)/venv
export ORT_DYLIB_PATH ?= $(TOOLS)/lib/libonnxruntime.so
export CARGO_TERM_COLOR ?= never
DATA         ?= ../shared/datasets
CARGO_TEST   := cargo test --workspace --locked

.PHONY: help setup setup-build demo test test-rust test-infra lint fmt bench bench-aws eval build deploy destroy test-localstack local fuzz clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: ## Install the test tools into .tools/ (venv with onnxruntime, emulators); skips what is there
	@bash scripts/setup.sh

setup-build: ## Install only what build/deploy need (cargo-lambda and zig, into .tools/venv)
	@bash scripts/setup-build.sh

demo: setup ## Replay the committed hydraulic sample through the edge pipeline over MQTT
	cargo run --locked -q -p vigil-cli --bin vigil -- demo

test: setup test-rust test-infra ## Set up, then run every test

# tests/tests/local.rs runs the ingest bootstrap under cargo-lambda's emulator: a debug build
# (the release zip with cargo-lambda + zig costs minutes on 2 cores).
test-rust:
	cargo build --locked -q -p vigil-ingest --bin bootstrap
	$(CARGO_TEST)

# Its own venv: checkov pins boto3 and packaging below what moto (in .tools/venv) needs.
test-infra: ## Terraform fmt, checkov, the AWS provider schema check and the wiring checks (offline)
	VIGIL_TOOLS_VENV=$(TOOLS)/infra-venv bash infra/tests/run.sh

lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

FUZZ_TARGETS ?= telemetry event framer
FUZZ_SECONDS ?= 60
fuzz: ## Each fuzz target for FUZZ_SECONDS s (nightly + cargo-fuzz; see fuzz/README.md)
	@rustup toolchain list 2>/dev/null | grep -q '^nightly' || { echo "make fuzz needs a nightly toolchain (rustup toolchain install nightly); make test runs the same targets on stable"; exit 2; }
	@command -v cargo-fuzz >/dev/null || { echo "make fuzz needs cargo-fuzz (cargo install cargo-fuzz)"; exit 2; }
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/target/corpus/$$t && \
	  cargo +nightly fuzz run $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -print_final_stats=1 || exit 1; \
	done

bench: setup ## Criterion benchmarks (parse+window, ONNX per window, full pipeline)
	cargo bench --locked -p vigil-edge --bench pipeline

bench-aws: setup ## The deployed bootstrap under cargo-lambda's Runtime API: DynamoDB units, CPU, latency, cold start (JSON)
	bash scripts/bench-aws.sh

eval: setup ## Every evaluation on ../shared/datasets (last line of each: JSON figures)
	cargo build --locked -q -p vigil-cli --bin vigil
	for t in cooler valve pump accumulator; do target/debug/vigil eval hydraulic --target $$t --data $(DATA)/hydraulic | tail -n1; done
	for t in rmg941 cwru; do target/debug/vigil eval $$t --data $(DATA)/$$t | tail -n1; done
	target/debug/vigil eval nab --data $(DATA)/nab-corpus | tail -n1

# build/deploy need cargo, cargo-lambda + zig (installed by setup-build) and, for deploy, terraform and AWS
# credentials: none of the test emulators. ARCH must match lambda_architecture in terraform.tfvars.
ARCH ?= arm64

build: setup-build ## Lambda zip for $(ARCH) (default arm64; ARCH="arm64 x86_64" for both) in dist/
	for a in $(ARCH); do bash scripts/package-lambda.sh $$a || exit 1; done

deploy: build ## Build, then terraform init + apply in infra/envs/aws (see docs/deploy.md)
	terraform -chdir=infra/envs/aws init
	terraform -chdir=infra/envs/aws apply

destroy: ## terraform destroy in infra/envs/aws
	terraform -chdir=infra/envs/aws init
	terraform -chdir=infra/envs/aws destroy

# For users who run LocalStack (Docker, auth token): apply infra/envs/localstack to it, then run the AWS
# integration tests against it. LOCALSTACK_ENDPOINT defaults to http://localhost:4566; see docs/deploy.md.
LOCALSTACK_ENDPOINT ?= http://localhost:4566

test-localstack: setup build ## Apply infra/envs/localstack to a running LocalStack, then the AWS integration tests against it
	terraform -chdir=infra/envs/localstack init
	terraform -chdir=infra/envs/localstack apply -auto-approve -var localstack_endpoint=$(LOCALSTACK_ENDPOINT) -var lambda_architecture=$(firstword $(ARCH))
	VIGIL_TEST_ENDPOINT=$(LOCALSTACK_ENDPOINT) cargo test --locked -p vigil-tests

VIGIL_LOCAL_MODE ?= direct
local: setup ## The deployed cloud path on this machine: IoT Core stand-in, Lambda emulator, DynamoDB Local, moto; VIGIL_LOCAL_MODE=direct|sqs|kinesis (docs/local.md)
	@if [ -f dist/ingest-x86_64.zip ]; then \
	  rm -rf target/local/task && mkdir -p target/local/task && cd target/local/task && unzip -q ../../../dist/ingest-x86_64.zip; \
	  echo "local: the bootstrap of dist/ingest-x86_64.zip (make build)"; \
	else \
	  cargo build --locked -q -p vigil-ingest --bin bootstrap; \
	  echo "local: a debug bootstrap (run make build first to use the Lambda package)"; \
	fi
	VIGIL_LOCAL_MODE=$(VIGIL_LOCAL_MODE) VIGIL_LOCAL_BOOTSTRAP=$$( [ -f target/local/task/bootstrap ] && [ -f dist/ingest-x86_64.zip ] && echo $(CURDIR)/target/local/task/bootstrap || echo $(CURDIR)/target/debug/bootstrap ) \
	  cargo run --locked -q -p vigil-tests --bin vigil-local

clean:
	cargo clean
	rm -rf dist
