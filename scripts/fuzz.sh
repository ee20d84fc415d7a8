#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer, nightly): the wire layer (parse, framing,
# edits, re-parse), the whole request path up to the decision, and configuration
# and directory parsing. Each target runs for SECONDS (600 by default); a crash
# stops the script with libFuzzer's report and the input under fuzz/artifacts/.
#   scripts/fuzz.sh [seconds] [target ...]      targets: wire request_path config
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire request_path config)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
# The router's build compiles the policies to wasm with the toolchain it runs under.
rustup +nightly target add wasm32-unknown-unknown
command -v cargo-fuzz >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked

# Seed corpora from what the project ships.
for t in "${targets[@]}"; do mkdir -p "fuzz/corpus/$t"; done
for f in examples/deployment/requests/*; do
    [ -d fuzz/corpus/wire ] && cp "$f" "fuzz/corpus/wire/"
    [ -d fuzz/corpus/request_path ] && cp "$f" "fuzz/corpus/request_path/"
done
if [ -d fuzz/corpus/config ]; then
    { cat examples/deployment/router.toml; printf '\0'; cat examples/deployment/directory.toml; } > fuzz/corpus/config/example
fi

cargo +nightly fuzz build
for t in "${targets[@]}"; do
    # Inputs that once crashed a target stay fixed (fuzz/regressions/<target>-*).
    for r in fuzz/regressions/"$t"-*; do
        [ -e "$r" ] && cargo +nightly fuzz run "$t" "$r"
    done
    echo "== fuzzing $t for ${seconds}s"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536
done
