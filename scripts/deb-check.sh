#!/usr/bin/env bash
# Installs the Debian package built by scripts/deb.sh with dpkg -i, checks what
# it installed (the system user, the conffiles, the unit, manual pages,
# completions), starts the installed router as its user on the installed
# configuration (127.0.0.1:5060), checks a SIP OPTIONS gets 200, stops it, and
# removes and purges the package. Needs root; CI runs it (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "deb-check: run as root (it installs a package)" >&2; exit 1; }
deb=$(ls -t target/debian/exum-router_*.deb | head -1)
say() { echo "deb-check: $*"; }

if ! dpkg -s adduser >/dev/null 2>&1; then
    apt-get install -y -qq adduser
fi
dpkg -i "$deb"
say "installed $(dpkg-query -W -f='${Package} ${Version}' exum-router)"
trap 'dpkg -P exum-router >/dev/null 2>&1 || true' EXIT

id exum-router
[ "$(stat -c %U /var/lib/exum-router)" = exum-router ] || { say "/var/lib/exum-router is not the router's"; exit 1; }
for f in /usr/bin/exum-router /lib/systemd/system/exum-router.service \
    /usr/share/man/man1/exum-router.1.gz /usr/share/man/man1/exum-router-serve.1.gz \
    /usr/share/bash-completion/completions/exum-router /usr/share/zsh/vendor-completions/_exum-router \
    /usr/share/fish/vendor_completions.d/exum-router.fish; do
    [ -s "$f" ] || { say "missing $f"; exit 1; }
done
dpkg-query -W -f='${Conffiles}\n' exum-router | grep -q /etc/exum-router/router.toml || { say "router.toml is not a conffile"; exit 1; }
dpkg-query -W -f='${Conffiles}\n' exum-router | grep -q /etc/exum-router/directory.toml || { say "directory.toml is not a conffile"; exit 1; }
zcat /usr/share/man/man1/exum-router.1.gz | grep -q '^\.TH' || { say "no manual page header"; exit 1; }
/usr/bin/exum-router --version

if [ -d /run/systemd/system ] && systemctl is-active --quiet exum-router; then
    say "the service started on install; probing it"
    pid=""
else
    log=$(mktemp)
    # setpriv executes the router itself as its user (its pid is the router's).
    setpriv --reuid=exum-router --regid=exum-router --init-groups \
        /usr/bin/exum-router serve --config /etc/exum-router/router.toml >"$log" 2>&1 &
    pid=$!
    trap 'kill -TERM "$pid" 2>/dev/null || true; dpkg -P exum-router >/dev/null 2>&1 || true' EXIT
fi
python3 - "$pid" <<'PY'
import os, socket, sys, time
pid = sys.argv[1]
deadline = time.time() + 120
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(1)
port = s.getsockname()[1]
msg = ("OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
       f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-deb\r\n"
       "Max-Forwards: 70\r\nFrom: <sip:ci@127.0.0.1>;tag=deb\r\nTo: <sip:127.0.0.1:5060>\r\n"
       "Call-ID: deb-check\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
while True:
    if pid:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            sys.exit("deb-check: the installed router exited before it answered")
    s.sendto(msg, ("127.0.0.1", 5060))
    try:
        data, _ = s.recvfrom(65535)
        break
    except socket.timeout:
        if time.time() > deadline:
            sys.exit("deb-check: no answer to OPTIONS within 120 s")
line = data.split(b"\r\n")[0].decode()
print(f"deb-check: the installed router answered {line!r}")
sys.exit(0 if line == "SIP/2.0 200 OK" else 1)
PY
if [ -n "$pid" ]; then
    user=$(stat -c %U "/proc/$pid")
    [ "$user" = exum-router ] || { say "the router runs as $user"; exit 1; }
    kill -TERM "$pid"
    wait "$pid" || { cat "$log"; say "the router did not exit 0 on SIGTERM"; exit 1; }
    rm -f "$log"
    trap 'dpkg -P exum-router >/dev/null 2>&1 || true' EXIT
    [ -s /var/lib/exum-router/admin.token ] || { say "no admin token made in /var/lib/exum-router"; exit 1; }
fi

dpkg -r exum-router
[ ! -e /usr/bin/exum-router ] || { say "/usr/bin/exum-router left after removal"; exit 1; }
[ -e /etc/exum-router/router.toml ] || { say "removal (not purge) took the configuration"; exit 1; }
dpkg -P exum-router
[ ! -e /etc/exum-router/router.toml ] || { say "purge left the configuration"; exit 1; }
[ ! -e /var/lib/exum-router ] || { say "purge left /var/lib/exum-router"; exit 1; }
trap - EXIT
say "installed, served OPTIONS 200 as exum-router, removed and purged"
