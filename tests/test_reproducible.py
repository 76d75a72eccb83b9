"""One ``common.seed`` gives one result: a rerun of pretraining (masks seeded with ``model.seeded_masks=true``, see
music_ssl/models/masking.py) writes a bit-identical CPU checkpoint — student, EMA teacher and
optimizer state — and probing it gives identical result rows. (tests/test_masking.py checks that another seed gives
another checkpoint.) Bit-identity holds for one torch thread count: CPU kernels split reductions by thread, so a
run with OMP_NUM_THREADS=1 and one with 2 threads differ in the last bits (checked on the demo's MusicHuBERT)."""
import json

import pytest
import torch

import music_ssl  # noqa: F401  (allows fairseq.Dictionary in weights_only loads)
from conftest import run_cli, train_tiny


def tensors(tree, prefix="") -> dict:
    """Every tensor of a nested checkpoint dict, keyed by its path."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in tensors(sub, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in tensors(sub, f"{prefix}/{i}").items()}
    return {}


def write_probe_task(corpus, out) -> str:
    """A two-class CSV task over the session corpus's clips (6 train, 2 valid, 2 test)."""
    audio = corpus.parent / "audio"
    clips = sorted((audio / "train").glob("*.wav"))[:6] + sorted((audio / "valid").glob("*.wav"))
    splits = ["train"] * 4 + ["valid"] * 1 + ["test"] * 1 + ["train"] * 2 + ["valid", "test"]
    rows = [f"{clip},{i % 2},{split}" for i, (clip, split) in enumerate(zip(clips, splits))]
    out.write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return str(out)


def probe_rows(checkpoint, task_csv, out, cache) -> list[dict]:
    """``music-ssl-probe`` of ``checkpoint`` on ``task_csv`` (2 seeds, 3 epochs, CPU): its selected rows."""
    run_cli(["music-ssl-probe", "--config-name", "demo", f"data_root={out.parent}", f"out_dir={out}",
             f"cache_dir={cache}", f"tasks=[{{name:csv,path:{task_csv},type:multiclass}}]", "protocol.seeds=[0,1]",
             "protocol.train.max_epochs=3", "device=cpu", "progress=false", "source.kind=checkpoint",
             f"source.path={checkpoint}"], cwd=out.parent)
    return json.loads((out / "results.json").read_text())["selected"]


@pytest.mark.slow
def test_one_seed_gives_identical_checkpoints_and_probe_rows(tmp_path, session_corpus):
    runs = {name: train_tiny("music2vec_tiny", session_corpus, tmp_path / name, "+model.seeded_masks=true",
                             "common.seed=3", max_update=3) for name in ("a", "b")}
    states = {name: torch.load(path, weights_only=True, map_location="cpu") for name, path in runs.items()}
    for part in ("model", "last_optimizer_state"):
        a, b = tensors(states["a"][part]), tensors(states["b"][part])
        assert a and a.keys() == b.keys(), part
        different = [key for key in a if not torch.equal(a[key], b[key])]
        assert not different, f"{part}: {different[:5]}"
    assert any(key.startswith("/_ema") for key in tensors(states["a"]["model"])), "the EMA teacher is compared too"
    assert states["a"]["optimizer_history"][-1]["num_updates"] == 3

    task_csv = write_probe_task(session_corpus, tmp_path / "task.csv")
    # a separate feature cache per run, so the second probe recomputes its features from its own checkpoint
    rows = {name: probe_rows(path, task_csv, tmp_path / f"probe_{name}", tmp_path / f"cache_{name}")
            for name, path in runs.items()}
    assert rows["a"] and rows["a"] == rows["b"]
