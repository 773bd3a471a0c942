# The two commands: `make run` (build everything, serve examples/plinth.toml)
# and `make test` (what CI runs). `make build` builds without running.

WASM_TARGET := wasm32-wasip2
# Plugins `make build` puts where examples/plinth.toml expects them.
PLUGINS := hello accounts state media images forms exports
GUEST_WORKSPACES := plugins tests/guests/wasm benches/wasi-hello kit examples/notes examples/feedback-desk/desk examples/shared-checklist/lists
# Built for wasm32 and also natively, where their unit tests run against the
# kit's in-memory host.
NATIVE_WORKSPACES := kit plugins examples/notes examples/feedback-desk/desk examples/shared-checklist/lists
# Formatted like the rest; built only by `make fuzz`.
FMT_ONLY_WORKSPACES := fuzz
# Cargo's output; CI points this outside the clone to reuse it between runs.
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR

# cargo-fuzz and componentize-py, installed once outside the clone; each
# fuzz target runs this long.
PLINTH_TOOLS ?= $(HOME)/.cache/plinth-tools
# The Python plugins' component tool, in a virtual environment of its own;
# tests/guests/build.rs reads this too.
COMPONENTIZE_PY_VERSION := 0.25.1
PLINTH_COMPONENTIZE_PY ?= $(PLINTH_TOOLS)/componentize-py/bin/componentize-py
export PLINTH_COMPONENTIZE_PY
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := path config traceparent headers accounts_bodies state_bodies media_bodies

.PHONY: run build test bench fuzz wasm-target lang-tools test-deps plugins host fmt-check clippy feedback-desk shared-checklist

run: build
	./target/release/plinth serve --config examples/plinth.toml --data data

# The feedback desk slice (examples/feedback-desk/README.md), on 127.0.0.1:8081.
DESK_DATA ?= data/feedback-desk
feedback-desk: build
	./target/release/plinth serve --config examples/feedback-desk/plinth.toml --data $(DESK_DATA)

# The shared checklist slice (examples/shared-checklist/README.md), on 127.0.0.1:8082.
CHECKLIST_DATA ?= data/shared-checklist
shared-checklist: build
	./target/release/plinth serve --config examples/shared-checklist/plinth.toml --data $(CHECKLIST_DATA)

build: plugins host

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

# The component tools for the plugins written in JavaScript (componentize-js
# from the npm registry, pinned by plugins/counters-js/package-lock.json) and
# Python (componentize-py from PyPI).
lang-tools: plugins/counters-js/node_modules/.package-lock.json
	@python3 -c 'import ensurepip' 2> /dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv > /dev/null; }
	@"$(PLINTH_COMPONENTIZE_PY)" --version 2>/dev/null | grep -qF "$(COMPONENTIZE_PY_VERSION)" || { \
		python3 -m venv "$(PLINTH_TOOLS)/componentize-py" && \
		"$(PLINTH_TOOLS)/componentize-py/bin/pip" install --quiet componentize-py==$(COMPONENTIZE_PY_VERSION); }

# npm writes node_modules/.package-lock.json on install: a lock file newer
# than it installs again, so node_modules never lags behind what is committed.
%/node_modules/.package-lock.json: %/package-lock.json
	@command -v npm > /dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm > /dev/null; }
	cd $* && npm ci --no-audit --no-fund --loglevel=error

# The SMTP delivery test talks to a real SMTP server (aiosmtpd), the media
# tests upload with a real tus client (tuspy), the webhook tests verify
# signatures with the Standard Webhooks library (standardwebhooks), all from
# PyPI, the media tests scan with a real clamd (Debian's clamav-daemon,
# given its own signature file), and the forms pages are filled in a real
# headless Chromium (Debian's chromium and chromium-driver), and sign-in
# through an external provider meets a real OpenID Provider (oidc-provider
# from the npm registry, run by Node).
test-deps: lang-tools tests/oidc/node_modules/.package-lock.json
	@python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet aiosmtpd
	@python3 -c 'import tusclient' 2>/dev/null || python3 -m pip install --quiet tuspy
	@python3 -c 'import standardwebhooks' 2>/dev/null || python3 -m pip install --quiet standardwebhooks
	@command -v clamd > /dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clamav-daemon > /dev/null; }
	@command -v chromedriver > /dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null; }

plugins: wasm-target lang-tools
	cargo build --release --target $(WASM_TARGET) --manifest-path plugins/Cargo.toml
	mkdir -p target/plugins
	for p in $(PLUGINS); do cp "$(CARGO_TARGET_DIR)/$(WASM_TARGET)/release/$$p.wasm" target/plugins/; done
	cargo build --release --target $(WASM_TARGET) --manifest-path benches/wasi-hello/Cargo.toml
	cp "$(CARGO_TARGET_DIR)/$(WASM_TARGET)/release/wasi_hello.wasm" target/plugins/wasi-hello.wasm
	cd plugins/counters-js && node_modules/.bin/componentize-js counters.js --wit wit --world-name counters \
		--disable http fetch-event --out ../../target/plugins/counters-js.wasm
	cd plugins/counters-py && "$(PLINTH_COMPONENTIZE_PY)" --wit-path wit --world counters --quiet componentize app \
		--python-path . --output ../../target/plugins/counters-py.wasm
	for slice in feedback-desk/desk shared-checklist/lists; do \
		cargo build --release --target $(WASM_TARGET) --manifest-path examples/$$slice/Cargo.toml || exit 1; \
		cp "$(CARGO_TARGET_DIR)/$(WASM_TARGET)/release/$${slice#*/}.wasm" target/plugins/; done

# The binary is renamed into place: a build beside a running server (a
# slice's README test) never writes over a file being executed.
host:
	cargo build --release -p plinth
	@if [ "$(CARGO_TARGET_DIR)" != "$(CURDIR)/target" ]; then \
		mkdir -p target/release && cp "$(CARGO_TARGET_DIR)/release/plinth" target/release/plinth.new && \
		mv -f target/release/plinth.new target/release/plinth; fi

fmt-check:
	cargo fmt --all -- --check
	for w in $(GUEST_WORKSPACES) $(FMT_ONLY_WORKSPACES); do cargo fmt --all --manifest-path $$w/Cargo.toml -- --check || exit 1; done

clippy: wasm-target
	cargo clippy --workspace --all-targets -- -D warnings
	for w in $(GUEST_WORKSPACES); do \
		cargo clippy --target $(WASM_TARGET) --manifest-path $$w/Cargo.toml -- -D warnings || exit 1; done
	for w in $(NATIVE_WORKSPACES); do \
		cargo clippy --all-targets --manifest-path $$w/Cargo.toml -- -D warnings || exit 1; done

test: wasm-target test-deps fmt-check clippy
	cargo test --workspace
	for w in $(NATIVE_WORKSPACES); do cargo test --manifest-path $$w/Cargo.toml || exit 1; done
	$(MAKE) fuzz

# Each fuzz target for FUZZ_SECONDS over its checked-in corpus (fuzz/corpus,
# read only; what it finds goes under the target directory). cargo-fuzz on
# stable, without sanitizers: Rust is memory-safe here, the targets assert.
fuzz: plugins
	@"$(PLINTH_TOOLS)/bin/cargo-fuzz" --version 2>/dev/null | grep -qF "$(CARGO_FUZZ_VERSION)" || \
		CARGO_TARGET_DIR="$(PLINTH_TOOLS)/build" cargo install --quiet --locked --root "$(PLINTH_TOOLS)" cargo-fuzz@$(CARGO_FUZZ_VERSION)
	for t in $(FUZZ_TARGETS); do \
		mkdir -p "$(CARGO_TARGET_DIR)/fuzz-corpus/$$t" && \
		PATH="$(PLINTH_TOOLS)/bin:$$PATH" PLINTH_ACCOUNTS_WASM="$(CURDIR)/target/plugins/accounts.wasm" \
		PLINTH_STATE_WASM="$(CURDIR)/target/plugins/state.wasm" PLINTH_MEDIA_WASM="$(CURDIR)/target/plugins/media.wasm" \
		cargo fuzz run --sanitizer none --fuzz-dir fuzz $$t "$(CARGO_TARGET_DIR)/fuzz-corpus/$$t" fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 || exit 1; \
	done
	@echo "fuzz: $(words $(FUZZ_TARGETS)) passed, 0 failed"

# Micro-benchmarks (criterion) and load figures (wrk and oha over loopback,
# beside bare hyper and `wasmtime serve`), written into BENCHMARKS.md.
bench: build
	cargo build --release -p bare-hyper
	bash benches/run.sh
