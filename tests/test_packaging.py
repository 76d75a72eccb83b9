"""Installable like a library: a wheel built from the checkout, installed into a fresh venv that reuses the pinned
stack offline, runs every console script and a tiny pipeline from an empty folder, without the checkout."""
import configparser
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from argparse import Namespace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import music_ssl
from conftest import REPO, write_clips
from music_ssl import fairseq_patches


def run(args, cwd: Path, env: dict = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``args``; raise with the tail of its output when it fails."""
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def copy_checkout(dest: Path) -> Path:
    """The files a clone has (tracked + untracked, not ignored): no build/, egg-info or caches of this checkout."""
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO).stdout.split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_symlink() or src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest


def pinned_stack_purelib() -> Path:
    """The site-packages holding the pinned stack (torch, fairseq, ...): the shared venv's, also when the tests run
    in a checkout venv of tools/make_env.sh (whose own site-packages holds only this checkout's music_ssl)."""
    return Path(torch.__file__).parents[1]


def venv_reusing_pinned_stack(venv: Path) -> Path:
    """A fresh venv of the same base interpreter whose site-packages falls back on the pinned stack's, offline.

    The .pth holds a plain path: the pinned venv's own .pth files (its editable install of the checkout) are not
    processed, so ``music_ssl`` resolves only to what is installed into the new venv. fairseq-fixed's console
    script, which pip would write if fairseq were installed there, is written the same way by hand.
    """
    run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    purelib = Path(run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=venv.parent).stdout.strip())
    (purelib / "_pinned_stack.pth").write_text(f"{pinned_stack_purelib()}\n")
    launcher = venv / "bin" / "fairseq-hydra-train"
    launcher.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom fairseq_cli.hydra_train import cli_main\n"
                        "sys.exit(cli_main())\n")
    launcher.chmod(0o755)
    return purelib


def console_scripts(dist_info: Path) -> list[str]:
    entry_points = configparser.ConfigParser()
    entry_points.read(dist_info / "entry_points.txt")
    return sorted(entry_points["console_scripts"])


def test_user_dir_named_music_ssl_is_the_imported_package(tmp_path, caplog):
    """fairseq refuses a user_dir whose folder differs from an imported module of that name, and a folder that is
    gone (a checkpoint's user_dir from the machine that trained it); both mean this package, already imported."""
    from fairseq import utils

    other = tmp_path / "elsewhere" / "music_ssl"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("raise RuntimeError('the other copy was imported')\n")
    with pytest.raises(ImportError, match="not globally unique"):
        fairseq_patches._FAIRSEQ_IMPORT_USER_MODULE(Namespace(user_dir=str(other)))  # fairseq's own behaviour
    gone = "/cluster/gone/music_ssl"
    with caplog.at_level(logging.INFO, logger=fairseq_patches.__name__):
        for user_dir in (other, gone, REPO / "music_ssl"):
            utils.import_user_module(Namespace(user_dir=str(user_dir)))
    redirected = [r.args[0] for r in caplog.records if "using the imported music_ssl" in r.getMessage()]
    assert redirected == [str(other), gone]  # the imported package's own folder is used silently
    assert sys.modules["music_ssl"] is music_ssl and Path(music_ssl.__file__).resolve().parent == REPO / "music_ssl"
    with pytest.raises(FileNotFoundError):  # any other plugin name is still fairseq's business
        utils.import_user_module(Namespace(user_dir=str(tmp_path / "another_plugin")))


def write_tiny_probe_corpus(root: Path) -> Path:
    """CSV tasks like the demo corpus's (key.csv, instrument.csv, ...) on 15 synthetic 2-s pieces."""
    from test_probe_train import write_demo_like_corpus

    write_demo_like_corpus(root, n=15, seconds=2.0)
    return root


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_pipeline_from_an_empty_folder(tmp_path):
    wheel_dir, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "work"
    src = copy_checkout(tmp_path / "src")
    # as `python -m build` does (offline, without it): the sdist first, then the wheel from the unpacked sdist,
    # so a file setup.py needs but MANIFEST.in leaves out fails here
    run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "sdist")], cwd=src)
    with tarfile.open(next((tmp_path / "sdist").glob("music_ssl-*.tar.gz"))) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    sdist_root = next((tmp_path / "unpacked").glob("music_ssl-*"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         str(sdist_root), "-w", str(wheel_dir)], cwd=tmp_path)
    wheel = next(wheel_dir.glob("music_ssl-*.whl"))
    purelib = venv_reusing_pinned_stack(venv)
    python = str(venv / "bin" / "python")
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", str(wheel)],
        cwd=tmp_path)

    # pip show -f: installed into the new venv, music_ssl only (no top-level tools)
    show = run([sys.executable, "-m", "pip", "--python", python, "show", "-f", "music-ssl"], cwd=tmp_path).stdout
    assert f"Location: {purelib}" in show
    files = [line.strip() for line in show.split("Files:")[1].splitlines() if line.strip()]
    assert not [f for f in files if f.startswith("tools")] and "music_ssl/config/pretrain/music_hubert_tiny.yaml" in files
    shipped = {str(f.relative_to(src)) for f in (src / "music_ssl").rglob("*") if f.is_file()}
    assert shipped <= set(files), f"the package folder's files missing from the wheel: {sorted(shipped - set(files))}"
    assert (purelib / "music_ssl-0.1.0.dist-info" / "top_level.txt").read_text().split() == ["music_ssl"]

    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin", VIRTUAL_ENV=str(venv), OMP_NUM_THREADS="1")

    def sh(command: str) -> str:  # the user's shell, in the empty folder
        return run(["bash", "-c", command], cwd=work, env=env).stdout

    scripts = console_scripts(purelib / "music_ssl-0.1.0.dist-info")
    assert {"music-ssl-manifest", "music-ssl-kmeans", "music-ssl-probe", "music-ssl-config-dir",
            "music-ssl-train"} <= set(scripts)
    with ThreadPoolExecutor(2) as pool:
        helps = dict(zip(scripts, pool.map(lambda s: sh(f"{s} --help"), scripts)))
    assert all(text.startswith("usage: ") for text in helps.values()), helps

    # the pipeline: manifest -> MFCC k-means labels -> 2 updates of MusicHuBERT tiny -> demo probe on it
    audio = tmp_path / "audio"
    write_clips(audio, 10, 2.0, seed=3)
    sh(f"music-ssl-manifest {audio} --dest manifests --valid-percent 0.2")
    sh("music-ssl-kmeans all manifests labels --n-clusters 8 --device cpu")
    assert sorted(p.name for p in (work / "labels").glob("*.km")) == ["train.km", "valid.km"]
    # the README's lines; both folders are printed from the imported package's __file__: the installed copy runs
    out = sh('CFG="$(music-ssl-config-dir)"; PLUGIN="$(music-ssl-config-dir --user-dir)"; echo "$CFG $PLUGIN"; '
             'fairseq-hydra-train --config-dir "$CFG/pretrain" --config-name music_hubert_tiny '
             'task.data=$PWD/manifests task.label_dir=$PWD/labels task.label_rate=100 optimization.max_update=2 '
             'common.user_dir="$PLUGIN" checkpoint.save_dir=$PWD/checkpoints')
    assert out.splitlines()[0] == f"{purelib / 'music_ssl' / 'config'} {purelib / 'music_ssl'}"
    state = torch.load(work / "checkpoints" / "checkpoint_last.pt", weights_only=True, map_location="cpu")
    assert state["optimizer_history"][-1]["num_updates"] == 2
    assert state["cfg"]["common"]["user_dir"] == str(purelib / "music_ssl"), "the installed plugin trained"
    corpus = write_tiny_probe_corpus(tmp_path / "corpus")
    tasks = "[{name:csv,path:${data_root}/key.csv,type:key},{name:csv,path:${data_root}/instrument.csv}]"
    out = sh(f"music-ssl-probe --config-name demo data_root={corpus} 'tasks={tasks}' source.kind=checkpoint "
             "source.path=$PWD/checkpoints/checkpoint_last.pt out_dir=$PWD/probe protocol.seeds=[0] "
             "protocol.train.max_epochs=2 device=cpu progress=false cache_dir=null")
    results = json.loads((work / "probe" / "results.json").read_text())
    assert {r["task"] for r in results["selected"]} == {"key", "instrument"} and "| key" in out
    assert not (work / "tools").exists() and not list(work.glob("*.egg-info"))
