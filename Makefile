# sap-harness: the two commands a newcomer needs.
#   make quickstart   install what is missing, build, run experiments/quickstart.toml
#   make test         fmt check, clippy -D warnings, the whole test suite

SHELL := /bin/bash
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(CURDIR)/.venv/bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: quickstart test setup bench

setup:
	@scripts/setup.sh

quickstart: setup
	@[ -f data/cifar-synth/SYNTHETIC.txt ] || ./target/release/sap synth-cifar data/cifar-synth
	./target/release/sap run experiments/quickstart.toml --jobs 2 --report

test:
	@SAP_SKIP_BUILD=1 SAP_WITH_SLURM=1 scripts/setup.sh
	cargo fmt --all -- --check
	cargo clippy --all-targets --quiet -- -D warnings
	cargo test --quiet

bench: setup
	./target/release/sap bench env
