#!/usr/bin/env bash
# Runs every check and test of exum-router: formatting, clippy (warnings are
# errors), and the whole workspace's tests (unit, integration, CLI, examples).
# The build compiles every policy and test fixture to a component from source.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
