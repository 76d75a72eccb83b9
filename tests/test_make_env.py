"""One checkout, one code (issue #20): ``make env`` gives every clone its own light venv (``<clone>/.venv``) over the
shared pinned stack, so each clone's python, tests and console scripts run that clone's ``music_ssl`` — never the
code of whichever clone ran ``make`` last. The shared venv here is the one these tests run on
(``MUSIC_SSL_SHARED_VENV``): nothing is downloaded, and the test checks that nothing is written into it."""
import os
import shutil
from pathlib import Path

import pytest

from test_packaging import copy_checkout, pinned_stack_purelib, run

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def listing(folder: Path) -> list:
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())


def python_says(venv: Path, code: str, cwd: Path) -> str:
    return run([str(venv / "bin" / "python"), "-c", code], cwd=cwd).stdout.strip()


@pytest.mark.slow  # two clones, `make env` in each, two imports of the whole stack
def test_each_clone_runs_its_own_code_over_one_shared_pinned_stack(tmp_path):
    shared_lib = pinned_stack_purelib()
    shared = shared_lib.parents[2]  # <venv>/lib/python3.12/site-packages
    if not (shared / "pyvenv.cfg").is_file():
        pytest.skip(f"the pinned stack ({shared_lib}) is not in a venv")
    before = listing(shared_lib), listing(shared / "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "MAKEFLAGS", "MFLAGS")}
    env.update(MUSIC_SSL_ENV_ROOT=str(tmp_path / "envs"), MUSIC_SSL_SHARED_VENV=str(shared))
    clones = [copy_checkout(tmp_path / name).resolve() for name in ("a", "b")]
    (clones[1] / "music_ssl" / "clone_b.py").write_text("")  # code that only clone b has

    (clones[1] / ".venv").mkdir()  # a venv the user made there is never replaced
    proc = run(["bash", "-c", "make -s env; echo rc=$?"], cwd=clones[1], env=env)
    assert "was not made by tools/make_env.sh; move it away" in proc.stderr and proc.stdout.endswith("rc=2\n")
    (clones[1] / ".venv").rmdir()

    for clone in clones:
        proc = run(["make", "-s", "env"], cwd=clone, env=env)
        venv = clone / ".venv"
        assert proc.stdout.splitlines()[-1] == str(venv) and "making" in proc.stderr
        origin = "import importlib.util as u; print(u.find_spec('music_ssl').origin)"
        assert python_says(venv, origin, tmp_path) == str(clone / "music_ssl" / "__init__.py")
        # console scripts: this clone's (music-ssl-*) and the stack's, started with this venv's python
        user_dir = run([str(venv / "bin" / "music-ssl-config-dir"), "--user-dir"], cwd=tmp_path, env=env)
        assert user_dir.stdout.strip() == str(clone / "music_ssl")
        for script in ("fairseq-hydra-train", "torchrun", "pytest"):
            assert (venv / "bin" / script).read_text().splitlines()[0] == f"#!{venv / 'bin' / 'python'}", script
    a, b = (clone / ".venv" for clone in clones)
    assert python_says(a, "import importlib.util as u; print(u.find_spec('music_ssl.clone_b'))", tmp_path) == "None"
    assert python_says(b, "import importlib.util as u; print(u.find_spec('music_ssl.clone_b') is not None)",
                       tmp_path) == "True"
    stack = python_says(a, "import music_ssl, torch, fairseq; print(music_ssl.__file__, torch.__file__)", tmp_path)
    assert stack == f"{clones[0] / 'music_ssl' / '__init__.py'} {shared_lib / 'torch' / '__init__.py'}"

    again = run(["make", "-s", "env"], cwd=clones[0], env=env)  # up to date: reused, not remade
    assert again.stdout.splitlines()[-1] == str(a) and "making" not in again.stderr
    assert (listing(shared_lib), listing(shared / "bin")) == before, "the shared venv was written to"
