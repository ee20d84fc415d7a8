"""Regenerates ``exum_policy/_wit``, the SDK's copy of the bindings for
CPython: the output of
``componentize-py -d ../sdk/wit/policy.wit -w policy bindings exum_policy/_wit``.

Run ``gen_bindings.sh`` (``python exum_policy/_gen.py [policy.wit]`` from
``sdk-py/``, with componentize-py installed; run as a file, since the package
itself needs ``_wit``) after a change to the contract. The SDK's tests check
the copy is current. Only the standard library is used here.
"""

import os
import shutil
import sys
import tempfile
from typing import Optional

#: This package's folder, and the repository's contract relative to it.
PACKAGE = os.path.dirname(os.path.abspath(__file__))
WIT = os.path.normpath(os.path.join(PACKAGE, "..", "..", "sdk", "wit", "policy.wit"))
WORLD = "policy"


def generate(out: str, wit: str = WIT) -> None:
    """Writes the bindings of ``wit``'s world ``policy`` into the folder ``out``
    (which must not exist), with componentize-py's own code. Raises
    ``RuntimeError`` when componentize-py fails."""
    from componentize_py import script  # imported here: only this needs it

    argv = sys.argv
    sys.argv = ["componentize-py", "-d", wit, "-w", WORLD, "bindings", out]
    try:
        status = script()
    except SystemExit as e:  # the CLI may exit instead of returning
        status = e.code
    finally:
        sys.argv = argv
    if status not in (None, 0):
        raise RuntimeError(f"componentize-py bindings failed with status {status}")


def regenerate(wit: str = WIT, target: Optional[str] = None) -> str:
    """Replaces ``target`` (``exum_policy/_wit``) with freshly generated
    bindings of ``wit``. Returns ``target``."""
    target = target or os.path.join(PACKAGE, "_wit")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "_wit")
        generate(out, wit)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(out, target)
    return target


def main() -> int:
    """``python exum_policy/_gen.py [path/to/policy.wit]``."""
    wit = sys.argv[1] if len(sys.argv) > 1 else WIT
    if not os.path.isfile(wit):
        print(f"no contract at {wit}: give the path to sdk/wit/policy.wit", file=sys.stderr)
        return 1
    print(f"generated {regenerate(wit)} from {wit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
