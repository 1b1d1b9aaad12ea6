# Telex. `make run` starts a single node; `make test` runs the whole suite.
# One cargo profile (release) serves run, test and bench, so RocksDB's C++ build happens once.

CARGO_TARGET_DIR ?= $(HOME)/telex-target
export CARGO_TARGET_DIR
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/release

.PHONY: deps build run test check fix bench clean-data image

deps:
	@./scripts/install-deps.sh

build: deps
	$(CARGO) build --release --bins

run: build
	$(BIN)/telexd $(ARGS)

# Tests drive the real binaries, so build them first.
test: build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --release --workspace --no-fail-fast; \
	else \
		$(CARGO) test --release --workspace --no-fail-fast; \
	fi
	@./scripts/fuzz-smoke.sh 20

# The container image (FROM scratch: telexd, telex and their shared libraries), no pulls.
image: build
	@./scripts/image.sh $(IMAGE)

# Read-only gate: formatting and lints.
check:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fix:
	$(CARGO) fmt --all
	$(CARGO) clippy --release --workspace --all-targets --fix --allow-dirty

bench:
	$(CARGO) run --release -p telex-raft --example commit-bench -- $(ARGS)

clean-data:
	rm -rf ./telex-data
