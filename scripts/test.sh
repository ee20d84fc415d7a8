#!/usr/bin/env bash
# Runs every check and test of exum-router: formatting, clippy (warnings are
# errors), and the whole workspace's tests (unit, integration over loopback
# sockets, sipp interop, CLI, examples). Installs sipp when it is missing.
# The build compiles every policy and test fixture to a component from source.
set -euo pipefail
cd "$(dirname "$0")/.."

# The interop tests drive the router with sipp (Debian package sip-tester).
if ! command -v sipp >/dev/null 2>&1; then
    echo "installing sip-tester (sipp) for the interop tests"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq sip-tester
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace
