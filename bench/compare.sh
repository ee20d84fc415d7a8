#!/usr/bin/env bash
# The comparison with Kamailio, in one command: installs sipp and Kamailio when
# missing, builds exum-router and the harness in release mode, runs the rate
# ladder alternating the systems, and writes bench/results/compare.{md,json}.
#   bench/compare.sh [calls-per-step] [rates] [systems] [repeats] [udp|tcp|tls]
#   e.g. bench/compare.sh 20000 1000,2000 direct,kamailio,standard 3 tcp (writes compare-tcp.{md,json})
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v kamailio >/dev/null 2>&1 || need+=(kamailio)
[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so ] || need+=(kamailio-tls-modules)
command -v stunnel >/dev/null 2>&1 || need+=(stunnel4)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
cargo build --release -p exum-router -p exum-bench --bin exum-router --bin compare
EXUM_ROUTER="$PWD/target/release/exum-router" ./target/release/compare "$@"
