"""exum_policy/_wit is exactly what componentize-py generates from the
repository's contract (regenerate it with gen_bindings.sh)."""

import filecmp
import importlib.util
import os
import subprocess
import sys

import pytest

from exum_policy import _bindings, _gen

COMPONENTIZE_PY = importlib.util.find_spec("componentize_py")


def tree(root):
    """Every file under ``root`` (``__pycache__`` left out), relative to it."""
    out = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        out.update(os.path.relpath(os.path.join(folder, f), root) for f in files)
    return out


@pytest.mark.skipif(COMPONENTIZE_PY is None, reason="componentize-py is not installed (pip install -r requirements-dev.txt)")
@pytest.mark.skipif(not os.path.isfile(_gen.WIT), reason=f"no contract at {_gen.WIT}: not in the exum-router repository")
def test_the_committed_bindings_are_those_componentize_py_generates(tmp_path):
    fresh = str(tmp_path / "_wit")
    _gen.generate(fresh)
    committed = os.path.join(_gen.PACKAGE, "_wit")
    assert tree(fresh) == tree(committed), "run sdk-py/gen_bindings.sh"
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, sorted(tree(fresh)), shallow=False)
    assert (mismatch, errors) == ([], []), "run sdk-py/gen_bindings.sh"


def test_under_cpython_the_sdk_s_copy_is_imported():
    import wit_world

    assert not _bindings.IN_COMPONENT
    assert _bindings.SDK_COPY
    assert os.path.dirname(os.path.dirname(wit_world.__file__)) == os.path.join(_gen.PACKAGE, "_wit")


def test_without_a_test_host_the_imports_say_what_is_missing():
    # A fresh interpreter: in this one, tests have installed hosts.
    code = (
        "from exum_policy import host\n"
        "try:\n"
        "    host.settings()\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=os.path.dirname(_gen.PACKAGE), capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("wit_world.imports.directory.settings: no TestHost installed")
