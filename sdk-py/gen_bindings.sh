#!/bin/sh
# Regenerates exum_policy/_wit, the SDK's copy of the contract's bindings for
# CPython (what componentize-py generates inside a component), after a change
# to sdk/wit/policy.wit. Uses the repository's toolchain venv (target/python,
# `pip install -r sdk-py/requirements-dev.txt`), or $PYTHON with componentize-py.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-$here/../target/python/bin/python}
cd "$here"
# The file, not `-m exum_policy._gen`: the package cannot be imported without _wit.
exec "$python" exum_policy/_gen.py "$@"
