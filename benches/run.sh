#!/usr/bin/env bash
# `make bench`, after the release build: installs the load generators and
# `wasmtime serve` once (cached in $PLINTH_BENCH_TOOLS), runs the criterion
# micro-benchmarks and benches/load.sh, prints the figures and writes them
# into BENCHMARKS.md with the machine, the commit and the command.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$PWD/target}"
export PLINTH_BENCH_TOOLS=${PLINTH_BENCH_TOOLS:-$HOME/.cache/plinth-bench-tools}
# `wasmtime serve` at the very version the host links (from Cargo.lock).
WASMTIME_VERSION=$(awk '$0 == "name = \"wasmtime\"" { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)
OHA_VERSION=1.16.0

command -v wrk > /dev/null || { apt-get update -qq && apt-get install -y -qq wrk > /dev/null; }
# The HTTP/2 client the stream fan-out and attack scenarios speak with.
python3 -c 'import h2' 2> /dev/null || python3 -m pip install --quiet h2
install_tool() { # crate, version, binary
  "$PLINTH_BENCH_TOOLS/bin/$3" --version 2> /dev/null | grep -qF "$2" && return
  echo "installing $1 $2 into $PLINTH_BENCH_TOOLS (once; minutes)" >&2
  CARGO_TARGET_DIR="$PLINTH_BENCH_TOOLS/target" cargo install --quiet --locked "$1@$2" --root "$PLINTH_BENCH_TOOLS"
}
install_tool wasmtime-cli "$WASMTIME_VERSION" wasmtime
install_tool oha "$OHA_VERSION" oha

started=$(date +%s)
cargo bench -p plinth --bench runtime -- --warm-up-time 1 --measurement-time 3 >&2
bash benches/load.sh > "$CARGO_TARGET_DIR/load.tsv"
cargo bench -p plinth --bench variants >> "$CARGO_TARGET_DIR/load.tsv"
cargo bench -p plinth --bench exports >> "$CARGO_TARGET_DIR/load.tsv"
cargo bench -p plinth --bench backup >> "$CARGO_TARGET_DIR/load.tsv"
cargo bench -p plinth --bench migration >> "$CARGO_TARGET_DIR/load.tsv"
cargo bench -p plinth --bench backfill >> "$CARGO_TARGET_DIR/load.tsv"
cargo bench -p plinth --bench slices >> "$CARGO_TARGET_DIR/load.tsv"
python3 benches/report.py "$CARGO_TARGET_DIR/load.tsv" "$CARGO_TARGET_DIR/criterion" "$started" BENCHMARKS.md \
  "make bench (SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}, PATCH_RATE=${PATCH_RATE:-1000}; wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}'), oha $OHA_VERSION, wasmtime-cli $WASMTIME_VERSION)"
