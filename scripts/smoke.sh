#!/usr/bin/env bash
# Runs the README's first command as a newcomer would (the router on the shipped
# example deployment, built in release), checks that it answers a SIP OPTIONS on
# 127.0.0.1:5060, and stops it with SIGINT: it must exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
# A process group of its own, so that SIGINT reaches the router (cargo run
# replaces itself with the binary) and nothing else.
setsid cargo run --release -p exum-router 2>"$log" &
pid=$!
trap 'kill -INT -- "-$pid" 2>/dev/null || true; rm -f "$log"' EXIT

# The first build compiles everything: wait up to 40 minutes for "listening".
for _ in $(seq 1 2400); do
    if grep -q "listening" "$log"; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        cat "$log"
        echo "smoke: the router exited before it listened" >&2
        exit 1
    fi
    sleep 1
done
grep -q "listening" "$log" || { cat "$log"; echo "smoke: the router never listened" >&2; exit 1; }

python3 - <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
msg = ("OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
       f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-smoke\r\n"
       "Max-Forwards: 70\r\nFrom: <sip:ci@127.0.0.1>;tag=smoke\r\nTo: <sip:127.0.0.1:5060>\r\n"
       "Call-ID: smoke\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
s.sendto(msg.encode(), ("127.0.0.1", 5060))
data, _ = s.recvfrom(65535)
line = data.split(b"\r\n")[0].decode()
print(f"smoke: the router answered {line!r}")
sys.exit(0 if line == "SIP/2.0 200 OK" else 1)
PY

kill -INT -- "-$pid"
trap 'rm -f "$log"' EXIT
status=0
wait "$pid" || status=$?
grep -q "stopping" "$log" || { cat "$log"; echo "smoke: no graceful stop" >&2; exit 1; }
[ "$status" -eq 0 ] || { cat "$log"; echo "smoke: exit status $status after SIGINT" >&2; exit 1; }
echo "smoke: the example deployment served and stopped cleanly"
