"""Launching pretraining beyond one process: the shipped run/ configs (Slurm through hydra-submitit-launcher,
submitit's local executor, torchrun's env:// rendezvous), rank-0-only checkpoints, resume on another world size."""
import re
import sys
from pathlib import Path

import pytest
import torch

import music_ssl  # noqa: F401  (allows fairseq.Dictionary in weights_only loads)
from conftest import USER_DIR, free_port, num_updates, run_cli, two_worker_corpus
from music_ssl.core.resources import PRETRAIN_CONFIG_DIR

RUN_DIR = PRETRAIN_CONFIG_DIR / "run"
CPU_DDP = ("distributed_training.distributed_backend=gloo",
           "distributed_training.ddp_backend=legacy_ddp")  # c10d passes device_ids, which CPU modules refuse


def compose_with_hydra(name: str, *overrides: str):
    """Compose ``<pretrain>/<name>`` with the hydra node, as fairseq-hydra-train -m would (no launch)."""
    from hydra import compose, initialize_config_dir

    from conftest import fairseq_schema

    with fairseq_schema(name), initialize_config_dir(config_dir=str(PRETRAIN_CONFIG_DIR), version_base="1.1"):
        return compose(config_name=name, overrides=["task.data=/data", *overrides], return_hydra_config=True)


@pytest.mark.parametrize("nodes", [1, 2, 4, 8])
def test_slurm_configs_ask_for_8_gpus_per_node_and_one_task_per_gpu(nodes):
    cfg = compose_with_hydra("music2vec_base", f"+run=slurm_{nodes}")
    launcher, dist = cfg.hydra.launcher, cfg.distributed_training
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (nodes, 8, 8)
    assert dist.distributed_world_size == 8 * nodes and dist.distributed_port > 0  # fairseq's Slurm rendezvous
    assert list(cfg.optimization.update_freq) == [1]
    assert cfg.model.mask_prob == 0.65 and cfg.dataset.max_tokens == 3800000, "the model config is untouched"


@pytest.mark.parametrize("run", ["slurm_1", "slurm_2", "slurm_4", "slurm_8", "slurm_cpu"])
def test_a_slurm_jobs_rendezvous_port_comes_from_its_job_id(run, monkeypatch):
    """Two multi-task jobs sharing a first node must not meet at one port: each job's port is
    20000 + SLURM_JOB_ID mod 10000 (the same in every task and after a requeue), 29671 outside Slurm."""
    cfg = compose_with_hydra("music2vec_base", f"+run={run}")
    ports = {}
    for job in ("4812345", "4812346", "4822345"):
        monkeypatch.setenv("SLURM_JOB_ID", job)
        ports[job] = cfg.distributed_training.distributed_port  # resolved now, in the job's environment
    assert ports == {"4812345": 22345, "4812346": 22346, "4822345": 22345}
    monkeypatch.delenv("SLURM_JOB_ID")
    assert cfg.distributed_training.distributed_port == 29671


def test_one_node_slurm_is_the_papers_effective_batch():
    base = compose_with_hydra("music_hubert_base", "task.label_dir=/l", "task.label_rate=50")
    run = compose_with_hydra("music_hubert_base", "task.label_dir=/l", "task.label_rate=50", "+run=slurm_1")

    def batch(cfg):  # samples per update, all workers
        dist = cfg.distributed_training
        return dist.distributed_world_size * cfg.dataset.max_tokens * cfg.optimization.update_freq[0]

    assert batch(run) == batch(base) == 8 * 1400000


def test_run_configs_hold_only_launch_settings():
    """Every run/ YAML is a _global_ package touching hydra, distributed_training, optimization.update_freq, cpu."""
    from omegaconf import OmegaConf

    allowed = {"defaults", "hydra", "distributed_training", "optimization", "common"}
    names = sorted(p.stem for p in RUN_DIR.glob("*.yaml"))
    assert names == ["local", "slurm_1", "slurm_2", "slurm_4", "slurm_8", "slurm_cpu", "torchrun"]
    for path in RUN_DIR.glob("*.yaml"):
        assert path.read_text().startswith("# @package _global_"), path
        assert set(OmegaConf.load(path)) <= allowed, path


def tiny_args(model: str, data: Path, save: Path, *extra: str) -> list[str]:
    """The fairseq-hydra-train arguments of a tiny ``model`` run on ``data``, after the program name."""
    labels = [f"task.label_dir={data}", "task.label_rate=50"] if model == "music_hubert" else []
    return ["--config-dir", str(PRETRAIN_CONFIG_DIR), "--config-name", f"{model}_tiny", f"task.data={data}", *labels,
            f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={save}", *extra]


def trained_batch_sizes(log: str) -> list[str]:
    """``train_bsz`` of every epoch line of a fairseq json log (clips per update, all workers)."""
    return [line.split('"train_bsz": "')[1].split('"')[0] for line in log.splitlines() if '"train_bsz"' in line]


@pytest.mark.slow
def test_submitit_local_launches_two_cpu_workers_and_only_rank0_writes(tmp_path):
    data, save, sweep = two_worker_corpus(tmp_path), tmp_path / "ckpt", tmp_path / "sweep"
    run_cli(["fairseq-hydra-train", "-m", *tiny_args("music_hubert", data, save, "+run=local",
                                                     "optimization.max_update=2", f"hydra.sweep.dir={sweep}",
                                                     f"distributed_training.distributed_port={free_port()}")],
            cwd=tmp_path)
    logs = {rank: "".join(p.read_text() for p in sorted((sweep / "submitit").glob(f"*_{rank}_log.*")))
            for rank in (0, 1)}
    for rank, log in logs.items():
        assert f"distributed init (rank {rank}): tcp://localhost:" in log
    assert "Saved checkpoint" in logs[0] and "Saved checkpoint" not in logs[1], "rank 0 alone writes checkpoints"
    assert trained_batch_sizes(logs[0]) == ["16", "16"], "each update = 8 clips on each of the 2 workers"
    assert num_updates(save / "checkpoint_last.pt") == 2
    assert sorted(p.name for p in save.iterdir()) == ["checkpoint_best.pt", "checkpoint_last.pt"]


@pytest.mark.slow
def test_torchrun_two_workers_then_resume_on_one_with_the_same_batch(tmp_path):
    """torchrun (env:// rendezvous, 2 gloo workers) trains music2vec for 2 updates; then one process with
    update_freq [2] (the same 16 clips per update) resumes from checkpoint_last.pt, EMA teacher included, and
    continues the update count to 4."""
    data, save = two_worker_corpus(tmp_path), tmp_path / "ckpt"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                "--rdzv_backend=c10d", f"--rdzv_endpoint=localhost:{free_port()}", "-m", "fairseq_cli.hydra_train"]
    first = run_cli(torchrun + tiny_args("music2vec", data, save, "+run=torchrun", *CPU_DDP, "optimization.max_update=2",
                                         f"hydra.run.dir={tmp_path / 'hydra2'}"), cwd=tmp_path)
    out = first.stdout + first.stderr
    assert "distributed init (rank 0): env://" in out and "distributed init (rank 1): env://" in out
    assert num_updates(save / "checkpoint_last.pt") == 2
    assert trained_batch_sizes(out) == ["16", "16"], "each update = 8 clips on each of the 2 workers"
    teacher = torch.load(save / "checkpoint_last.pt", weights_only=True, map_location="cpu")["model"]["_ema"]
    run_cli(["fairseq-hydra-train", *tiny_args("music2vec", data, save, "optimization.max_update=4",
                                                "optimization.update_freq=[2]",
                                                f"hydra.run.dir={tmp_path / 'hydra1'}")], cwd=tmp_path)
    log = (tmp_path / "hydra1" / "hydra_train.log").read_text()
    assert re.search(r"Loaded checkpoint \S+checkpoint_last\.pt \(epoch \d+ @ 2 updates\)", log), "resumed, 2 done"
    assert num_updates(save / "checkpoint_last.pt") == 4
    assert set(trained_batch_sizes(log)) == {"16"}, "2 batches of 8 per update on one worker"
    moved = torch.load(save / "checkpoint_last.pt", weights_only=True, map_location="cpu")["model"]["_ema"]
    assert teacher.keys() == moved.keys() and any(not torch.equal(teacher[k], moved[k]) for k in teacher)


def test_torchrun_config_reads_torchruns_environment(monkeypatch):
    """The env:// settings resolve from torchrun's RANK / WORLD_SIZE / LOCAL_RANK as typed ints."""
    from omegaconf import OmegaConf

    for key, value in (("RANK", "5"), ("WORLD_SIZE", "16"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(key, value)
    dist = compose_with_hydra("music2vec_base", "+run=torchrun").distributed_training
    resolved = OmegaConf.to_container(dist, resolve=True)
    assert (resolved["distributed_rank"], resolved["distributed_world_size"], resolved["device_id"]) == (5, 16, 1)
    assert resolved["distributed_init_method"] == "env://" and resolved["distributed_no_spawn"] is True
