#!/usr/bin/env bash
# Runs every check and test of exum-router: formatting, clippy (warnings are
# errors), and the whole workspace's tests (unit, integration over loopback
# sockets, sipp interop, a PostgreSQL-backed fleet, LDAP, CLI, examples, the
# status page in a browser, the systemd unit, HEP capture). Installs sipp, sipsak,
# sngrep, PostgreSQL, OpenLDAP, systemd (for systemd-analyze) and Chromium when
# they are missing.
# The build compiles every policy and test fixture to a component from source.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need from Debian: sipp (sip-tester) for the interop tests;
# PostgreSQL (postgresql: initdb and postgres, which the fleet tests start in a
# temporary folder on a loopback port, and psql) for the directory database;
# OpenLDAP likewise for the LDAP directory source.
missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
# sipsak, a SIP client that reads answers on a connected socket.
command -v sipsak >/dev/null 2>&1 || missing+=(sipsak)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
# OpenLDAP (slapd, and ldap-utils for ldapadd and ldapmodify) for the LDAP source.
[ -x /usr/sbin/slapd ] || missing+=(slapd)
command -v ldapmodify >/dev/null 2>&1 || missing+=(ldap-utils)
# sngrep, listening for HEP, is the capture server of the HEP tests.
command -v sngrep >/dev/null 2>&1 || missing+=(sngrep)
# systemd-analyze verifies the unit in packaging/.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# Chromium, headless, loads the admin API's status page in a real browser.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Node and Python build the policies written in JavaScript and Python.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} for the tests"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# The toolchains of policies in other languages, from the registries at the
# versions pinned in the repository: componentize-js (sdk-js/package-lock.json,
# into sdk-js/node_modules) and componentize-py (sdk-py/requirements-dev.txt,
# into a virtual environment, target/python).
if ! cmp -s sdk-js/package-lock.json sdk-js/node_modules/.exum-installed-lock \
    || ! sdk-js/node_modules/.bin/componentize-js --version >/dev/null 2>&1; then
    echo "installing the JavaScript policy toolchain (npm ci in sdk-js)"
    npm ci --prefix sdk-js --no-audit --no-fund
    cp sdk-js/package-lock.json sdk-js/node_modules/.exum-installed-lock
fi
if ! cmp -s sdk-py/requirements-dev.txt target/python/.exum-installed-requirements \
    || ! target/python/bin/componentize-py --version >/dev/null 2>&1; then
    echo "installing the Python policy toolchain (pip install -r sdk-py/requirements-dev.txt into target/python)"
    python3 -m venv target/python
    target/python/bin/python -m pip install --quiet -r sdk-py/requirements-dev.txt
    cp sdk-py/requirements-dev.txt target/python/.exum-installed-requirements
fi

cargo fmt --all -- --check

# The JavaScript/TypeScript and Python SDKs and the examples written in those
# languages, tested natively (Node, CPython) without the router, as tenants
# test theirs; the TypeScript types checked by tsc.
(cd sdk-js && npm test && npm run --silent typecheck)
(cd sdk-py && ../target/python/bin/pytest -q -p no:cacheprovider)
for example in examples/*/typescript; do
    node --import ./sdk-js/src/register.js --test "$example"/test/*.test.ts
done
for example in examples/*/python; do
    (cd "$example" && PYTHONPATH="$PWD/../../../sdk-py" ../../../target/python/bin/pytest -q -p no:cacheprovider)
done

cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
# The SDK and the shipped policies as tenants build them, for wasm32: no
# warnings there either (the build above installed the target).
cargo clippy --target wasm32-unknown-unknown -p exum-policy-sdk -p exum-policy-standard \
    -p exum-example-pilot-group -p exum-example-after-hours -p exum-example-prefix-routing \
    -p exum-example-vip-first --lib -- -D warnings
cargo test --workspace
