"""Pretraining and probing through a real Slurm cluster: the tests start a one-node cluster (munged, slurmctld,
slurmd as root, ``CPUs=2``; ``tests/slurm_cluster.py``) once per session and submit with ``sbatch``/``srun``
through hydra-submitit-launcher, as a user on a cluster does. Skipped, with the reason, where the cluster cannot
start (not root, no apt-get to install ``slurm-wlm``/``munge``); CI runs as root and runs them.

What composition cannot see and these check: fairseq's Slurm rendezvous (``SLURM_*`` and ``scontrol show
hostnames``) joining both tasks into one gloo group of world size 2, rank 0 alone writing checkpoints and training
logs, the same losses and weights as submitit's local executor, a job sent the signal Slurm sends before the time
limit (USR2) being requeued by submitit and resuming from ``checkpoint_last.pt`` to the checkpoint an
uninterrupted run writes, and a probe sweep run as one Slurm job per checkpoint, gathered into one table.
"""
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import music_ssl  # noqa: F401  (allows fairseq.Dictionary in weights_only loads)
import slurm_cluster
from conftest import free_port
from test_launch import compose_with_hydra, tiny_args, trained_batch_sizes

logger = logging.getLogger(__name__)

MAX_UPDATE = 10
# bit-identical resume: crops drawn from (seed, epoch, clip) and masks seeded per sample (not numpy's global state)
DETERMINISTIC = ("task.crop_reading=true", "+model.seeded_masks=true")
SMALL_BATCH = "dataset.max_tokens=64000"  # 2 crops of 2 s per task: 8 clips = 2 updates per epoch on 2 tasks
EVERY_UPDATE = ("checkpoint.save_interval_updates=1", "checkpoint.keep_interval_updates=1")
SCHEDULE = "lr_scheduler.warmup_updates=4"  # the run passes warm-up into the polynomial decay
RUN_TIMEOUT_S = 300
LOADED = re.compile(r"Loaded checkpoint \S+checkpoint_last\.pt \(epoch (\d+) @ (\d+) updates\)")
SAVED = re.compile(r"Saved checkpoint \S+ \(epoch \d+ @ (\d+) updates")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """The session's one-node Slurm cluster; ``SLURM_CONF`` names it for every command the tests start. Its folder
    (config, daemons' logs) stays in pytest's temp folder after the session."""
    state = tmp_path_factory.mktemp("slurm")
    try:
        running = slurm_cluster.start(state)
    except slurm_cluster.SlurmUnavailable as err:
        pytest.skip(f"no Slurm test cluster on this machine: {err}")
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(running.conf)
    try:
        yield running
    finally:
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
        slurm_cluster.stop(state)


def command_env(**extra: str) -> dict:
    """This environment with the interpreter's bin dir first on PATH (the console scripts) and the sbin dirs."""
    path = os.pathsep.join([str(Path(sys.executable).parent), slurm_cluster.sbin_path()])
    return dict(os.environ, PATH=path, **extra)


def failure(what: str, proc_output: str, cluster, sweep: Path = None) -> str:
    """An assertion message: the command's output tail, the job logs and the daemons' log tails."""
    jobs = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted((sweep / "submitit").glob("*_log.*"))) if sweep else ""
    return f"{what}\n{proc_output[-6000:]}\n{jobs}\n{cluster.logs() if cluster else ''}"


def pretrain(model: str, data: Path, out: Path, run: str, env: dict = None) -> subprocess.Popen:
    """Start ``fairseq-hydra-train -m`` of a tiny ``model`` with ``+run=<run>`` (the launcher waits for the jobs);
    checkpoints in ``out/ckpt``, hydra's sweep (and submitit's job folder with every rank's log) in ``out/sweep``."""
    out.mkdir(parents=True, exist_ok=True)
    port = [f"distributed_training.distributed_port={free_port()}"] if run == "local" else []  # Slurm: the job's
    args = ["fairseq-hydra-train", "-m", *tiny_args(model, data, out / "ckpt", f"+run={run}",
                                                    f"hydra.sweep.dir={out / 'sweep'}", *port,
                                                    f"optimization.max_update={MAX_UPDATE}", SMALL_BATCH, SCHEDULE,
                                                    *DETERMINISTIC, *EVERY_UPDATE)]
    with open(out / "launcher.log", "w") as log:  # the launcher's output (the job logs are in submitit's folder)
        return subprocess.Popen(args, cwd=out, env=env or command_env(), stdout=log, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, out: Path, cluster=None) -> str:
    """Wait for a :func:`pretrain` launch; its output, or an assertion error with every log."""
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = (out / "launcher.log").read_text(errors="replace")
    assert proc.returncode == 0, failure(f"{proc.args[:2]} ended with {proc.returncode}", text, cluster,
                                         out / "sweep")
    return text


def rank_logs(sweep: Path) -> dict:
    """{rank: stdout + stderr of that task} from submitit's folder (``<job>_<rank>_log.out/.err``, appended to by
    a requeued job)."""
    return {rank: "".join(p.read_text(errors="replace")
                          for p in sorted((sweep / "submitit").glob(f"*_{rank}_log.*")))
            for rank in (0, 1)}


TIMING = ("wps", "ups", "wall")  # stats of speed, not of training


def epoch_stats(log: str) -> list:
    """The json stats lines fairseq logs per epoch (train and valid), as dicts without the timings, in order."""
    stats = [json.loads(line[line.index("{"):]) for line in log.splitlines()
             if ("[train][INFO]" in line or "[valid][INFO]" in line) and '"epoch"' in line]
    return [{k: v for k, v in s.items() if not any(t in k for t in TIMING)} for s in stats]


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True, map_location="cpu")


def differences(a, b, where: str = "") -> list:
    """Paths at which two checkpoint states differ (tensors bitwise, the rest with ==)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [f"{where}: max |diff| {(a.double() - b.double()).abs().max().item():.3g}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def training_state(path: Path) -> dict:
    """What a resumed run must continue exactly: weights, EMA teacher (``model._ema``), optimizer state and
    learning rate, update count and schedule state, data position (epoch, iterations in it), validation record.
    Left out: ``cfg`` (paths differ between the runs), the meters (wall-clock times) and fairseq's optimizer
    history before its last entry (a resumed run's history also records the run it resumed)."""
    state = load(path)
    extra = state["extra_state"]
    return {"model": state["model"], "criterion": state["criterion"], "optimizer": state["last_optimizer_state"],
            "history": state["optimizer_history"][-1], "train_iterator": extra["train_iterator"],
            "val_loss": extra["val_loss"], "best": extra["best"]}


class SlurmRuns:
    """Slurm runs of the tiny models, made once per session and shared (the uninterrupted reference of the requeue
    test is the music2vec run; the probe sweep probes both final checkpoints)."""

    def __init__(self, root: Path, data: Path, cluster):
        self.root, self.data, self.cluster, self.runs = root, data, cluster, {}

    def __call__(self, model: str) -> Path:
        if model not in self.runs:
            out = self.root / model
            finish(pretrain(model, self.data, out, "slurm_cpu"), out, self.cluster)
            self.runs[model] = out
        return self.runs[model]


@pytest.fixture(scope="session")
def slurm_runs(cluster, session_corpus, tmp_path_factory):
    return SlurmRuns(tmp_path_factory.mktemp("slurm_runs"), session_corpus, cluster)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["music2vec", "music_hubert"])
def test_two_slurm_tasks_train_as_one_gloo_group_like_submitit_local(cluster, slurm_runs, session_corpus, tmp_path,
                                                                     model):
    """``fairseq-hydra-train -m … +run=slurm_cpu``: sbatch + srun with 2 tasks; fairseq's Slurm rendezvous puts
    both in one process group of world size 2; rank 0 alone writes checkpoints and the training log; losses and
    final weights equal those of the same run through submitit's local executor (``+run=local``, 2 workers)."""
    out = slurm_runs(model)
    sweep = out / "sweep"
    logs = rank_logs(sweep)
    script = next((sweep / "submitit").glob("*_submission.sh")).read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "\nsrun " in script and "#SBATCH --signal=USR2@120" in script
    job = re.search(r"JobEnvironment\(job_id=(\d+)", logs[0]).group(1)
    node = cluster.node
    for rank in (0, 1):
        assert f"job_id={job}, hostname={node}, local_rank={rank}(2), node=0(1), global_rank={rank}(2)" in logs[rank]
        # fairseq's Slurm rendezvous: rank = SLURM_PROCID, tcp://<first node of `scontrol show hostnames`>:port
        assert f"Rank {rank}, device_id: {rank}" in logs[rank], "ranks from fairseq's Slurm rendezvous"
        assert re.search(rf"distributed init \(rank {rank}\): tcp://{node}:\d+", logs[rank])
        assert f"initialized host {node} as rank {rank}" in logs[rank]
    init = {rank: re.search(r"distributed init \(rank \d\): (\S+)", logs[rank]).group(1) for rank in (0, 1)}
    assert init[0] == init[1], "one rendezvous: one process group"
    assert init[0] == f"tcp://{node}:{20000 + int(job) % 10000}", "the rendezvous port comes from the job id"
    assert "training on 2 devices" in logs[0], "world size 2"
    assert SAVED.search(logs[0]) and not SAVED.search(logs[1]), "rank 0 alone writes checkpoints"
    assert epoch_stats(logs[0]) and not epoch_stats(logs[1]), "rank 0 alone writes the training log"
    job_log = (sweep / "hydra_train.log").read_text()  # hydra's log of the job, shared by both tasks
    assert epoch_stats(job_log) == epoch_stats(logs[0]), "each epoch's stats once, from rank 0"
    assert set(trained_batch_sizes(logs[0])) == {"4"}, "each update: 2 crops on each of the 2 tasks"
    ckpt = out / "ckpt"
    names = sorted(p.name for p in ckpt.iterdir())
    assert {"checkpoint_best.pt", "checkpoint_last.pt"} <= set(names) and not any(n.endswith(".tmp") for n in names)

    local = tmp_path / "local"
    one_thread = command_env(OMP_NUM_THREADS="1")  # what slurm_cpu.yaml's setup line does for each Slurm task
    finish(pretrain(model, session_corpus, local, "local", env=one_thread), local)
    local_log = rank_logs(local / "sweep")[0]
    assert epoch_stats(logs[0]) == epoch_stats(local_log), "the same losses (and every other stat) on the same seed"
    last = "checkpoint_last.pt"
    diff = differences(training_state(ckpt / last), training_state(local / "ckpt" / last))
    assert not diff, f"the same final checkpoint; differs at {diff[:10]}"


def job_id(sweep: Path, timeout: float = 120) -> str:
    """The Slurm job id of a launch, from submitit's folder (``<job>_submitted.pkl`` once sbatch answered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted((sweep / "submitit").glob("*_submitted.pkl"))
        if found:
            return found[0].name.split("_")[0]
        time.sleep(0.1)
    raise AssertionError(f"no job submitted in {timeout:.0f} s under {sweep}")


def wait_for_log(path_glob, pattern, proc, timeout: float = 180):
    """Poll the files of ``path_glob`` (a callable) until ``pattern`` matches; the match."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = "".join(p.read_text(errors="replace") for p in path_glob())
        found = pattern(text)
        if found:
            return found
        assert proc.poll() is None, f"the launch ended ({proc.returncode}) before {pattern}"
        time.sleep(0.05)
    raise AssertionError(f"{pattern} not seen in {timeout:.0f} s")


def job_field(cluster, job: str, name: str) -> str:
    """One ``Name=value`` field of ``scontrol show job`` (the record stays MinJobAge after the job ends)."""
    shown = cluster.run("scontrol", "show", "job", job).stdout
    return re.search(rf"\b{name}=(\S*)", shown).group(1)


def final_state(cluster, job: str, timeout: float = 60) -> str:
    """The job's state once it left RUNNING / COMPLETING (the launcher returns as the tasks write their results)."""
    deadline = time.monotonic() + timeout
    while (state := job_field(cluster, job, "JobState")) in ("RUNNING", "COMPLETING") and time.monotonic() < deadline:
        time.sleep(0.2)
    return state


def saving(ckpt: Path, timeout: float = 5) -> list:
    """Wait (up to ``timeout``) until a checkpoint write is under way (fairseq's ``X.pt.tmp``); its name, or []."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p.name for p in ckpt.glob("*.tmp")]
        if found:
            return found
        time.sleep(0.0005)
    return []


@pytest.mark.slow
def test_preempted_job_is_requeued_and_resumes_to_the_uninterrupted_checkpoint(cluster, slurm_runs, session_corpus,
                                                                                tmp_path):
    """The signal Slurm sends ``signal_delay_s`` before a job's time limit (and on preemption), USR2, sent to the
    job's tasks mid-run, as a checkpoint is being written: submitit's handler in rank 0 requeues the job (rank 1
    leaves it to rank 0) once the save is done (fairseq_patches item 8); while the job waits to restart every
    checkpoint file is whole and none is a ``.tmp``; the requeued job resumes from ``checkpoint_last.pt`` as it was (update
    count, epoch and position in it, LR schedule, optimizer, EMA teacher) and ends with the checkpoint of the
    uninterrupted run on the same seed, bit for bit."""
    reference = slurm_runs("music2vec") / "ckpt" / "checkpoint_last.pt"
    out = tmp_path / "preempted"
    proc = pretrain("music2vec", session_corpus, out, "slurm_cpu")
    try:
        sweep, ckpt = out / "sweep", out / "ckpt"
        job = job_id(sweep)
        rank0 = lambda: sorted((sweep / "submitit").glob(f"{job}_0_log.*"))  # noqa: E731
        wait_for_log(rank0, lambda text: any(int(u) >= 3 for u in SAVED.findall(text)), proc)
        being_written = saving(ckpt)
        cluster.run("scancel", "--signal=USR2", job)  # to every task of the job's step, as Slurm's --signal does
        deadline = time.monotonic() + 60
        while job_field(cluster, job, "JobState") != "PENDING":  # requeued: waits to start again
            assert time.monotonic() < deadline and proc.poll() is None, failure(
                "the job was not requeued", (out / "launcher.log").read_text(), cluster, sweep)
            time.sleep(0.05)
        whole = {p.name: load(p) for p in ckpt.glob("*.pt")}  # each loads: none is half-written
        cut = sorted(p.name for p in ckpt.glob("*.tmp"))  # writes left unfinished
        finish(proc, out, cluster)
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = rank_logs(sweep)
    assert "Caught signal SIGUSR2" in logs[0] and f"Requeued job {job}" in logs[0]
    assert "Not checkpointing nor requeuing since I am a slave (procid=1)" in logs[1]
    assert final_state(cluster, job) == "COMPLETED" and job_field(cluster, job, "Restarts") == "1"
    epoch, resumed_at = map(int, LOADED.search(logs[0]).groups())
    left = whole["checkpoint_last.pt"]
    assert (epoch, resumed_at) == (left["extra_state"]["train_iterator"]["epoch"],
                                   left["optimizer_history"][-1]["num_updates"]), \
        "resumed from checkpoint_last.pt as the stopped job left it"
    assert 3 <= resumed_at < MAX_UPDATE, f"resumed mid-run at update {resumed_at}"
    assert cut == [], f"the signal is handled once the save is done, so it cuts no write: {cut}"
    names = sorted(p.name for p in ckpt.iterdir())
    assert not any(n.endswith(".tmp") for n in names), f"no temp file outlives the resumed run: {names}"
    assert [h["num_updates"] for h in load(ckpt / "checkpoint_last.pt")["optimizer_history"]] == [resumed_at,
                                                                                                  MAX_UPDATE]
    diff = differences(training_state(ckpt / "checkpoint_last.pt"), training_state(reference))
    assert not diff, f"the requeued run ends where the uninterrupted one does; differs at {diff[:10]}"
    assert epoch_stats(logs[0])[-2:] == epoch_stats(rank_logs(reference.parents[1] / "sweep")[0])[-2:], \
        "the last epoch's train and valid stats (its meters restored from the checkpoint) are the same"
    logger.info("USR2 sent while %s was written; checkpoint_last.pt at update %d at requeue",
                being_written or "nothing", resumed_at)


@pytest.mark.slow
def test_probe_sweep_is_one_slurm_job_per_checkpoint_gathered_into_one_table(cluster, slurm_runs, tmp_path):
    """``music-ssl-probe -m … source.path=A,B +run=slurm_cpu``: one Slurm job (of one array) per checkpoint, each
    writing its own report into its own folder; ``music-ssl-probe --gather`` puts every row of both in one table."""
    import csv

    from test_probe_train import write_demo_like_corpus

    corpus, sweep = tmp_path / "corpus", tmp_path / "sweep"
    write_demo_like_corpus(corpus, n=10, seconds=2.0)
    checkpoints = [slurm_runs(model) / "ckpt" / "checkpoint_last.pt" for model in ("music2vec", "music_hubert")]
    task = f"{{name:csv,path:'{corpus / 'instrument.csv'}',type:multiclass}}"
    args = ["music-ssl-probe", "-m", "--config-name", "demo", "+run=slurm_cpu", f"data_root={corpus}",
            f"tasks=[{task}]", "protocol.seeds=[0,1]", "protocol.train.max_epochs=5", "source.kind=checkpoint",
            f"source.path={','.join(map(str, checkpoints))}", f"hydra.sweep.dir={sweep}",
            f"cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run(args, cwd=tmp_path, env=command_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, failure("the probe sweep failed", proc.stdout + proc.stderr, cluster, sweep)
    script = next((sweep / "submitit").glob("*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1" in script and "\nsrun " in script, "one job array, one job per checkpoint"
    array = re.search(r"\b(\d+)_submission\.sh", " ".join(p.name for p in (sweep / "submitit").iterdir())).group(1)
    for num, checkpoint in enumerate(checkpoints):
        log = (sweep / "submitit" / f"{array}_{num}_0_log.out").read_text()
        assert f"job_id={array}_{num}," in log and "probe report:" in log
        summary = json.loads((sweep / str(num) / "results.json").read_text())
        assert summary["config"]["source"]["path"] == str(checkpoint) and summary["device"] == "cpu"
        assert summary["config"]["out_dir"] == str(sweep / str(num)), "each job reports into its own folder"

    gathered = subprocess.run(["music-ssl-probe", "--gather", str(sweep)], cwd=tmp_path, env=command_env(),
                              capture_output=True, text=True, timeout=120)
    assert gathered.returncode == 0, gathered.stderr
    table = gathered.stdout
    assert all(str(c) in table for c in checkpoints) and table.count("| instrument |") == 2, table
    with open(sweep / "gathered.csv") as f:
        rows = list(csv.DictReader(f))
    for num, checkpoint in enumerate(checkpoints):
        with open(sweep / str(num) / "results.csv") as f:
            own = list(csv.DictReader(f))
        mine = [r for r in rows if r["folder"] == str(num)]
        assert len(mine) == len(own) == 6, "5 hidden states + the weighted sum"
        assert [(r["layer"], r["test_mean"], r["valid_mean"]) for r in mine] == \
            [(r["layer"], r["test_mean"], r["valid_mean"]) for r in own]
        assert {r["source_path"] for r in mine} == {str(checkpoint)}


@pytest.mark.slow
def test_probe_sweep_without_slurm_and_what_gather_reports(tmp_path):
    """The same ``music-ssl-probe -m`` with hydra's own launcher (no cluster): one job after the other, one folder
    each. ``--gather`` names a job folder without a report (a job that did not finish) under its table, and a folder
    without any report is one error line."""
    from test_probe_train import write_demo_like_corpus

    corpus, sweep = tmp_path / "corpus", tmp_path / "sweep"
    write_demo_like_corpus(corpus, n=10, seconds=2.0)
    tasks = ",".join(f"[{{name:csv,path:'{corpus / (name + '.csv')}',type:{kind}}}]"
                     for name, kind in (("instrument", "multiclass"), ("key", "key")))
    args = ["music-ssl-probe", "-m", "--config-name", "demo", f"data_root={corpus}", f"tasks={tasks}",
            "protocol.seeds=[0]", "protocol.train.max_epochs=3", "source.kind=mfcc", "device=cpu", "progress=false",
            f"hydra.sweep.dir={sweep}", "cache_dir=null"]
    proc = subprocess.run(args, cwd=tmp_path, env=command_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    tasks_run = [json.loads((sweep / str(n) / "results.json").read_text())["selected"][0]["task"] for n in (0, 1)]
    assert tasks_run == ["instrument", "key"], "one job per task, each reporting into its own folder"

    (sweep / "1" / "results.json").unlink()  # as a job that never finished leaves its folder
    gathered = subprocess.run(["music-ssl-probe", "--gather", str(sweep)], cwd=tmp_path, env=command_env(),
                              capture_output=True, text=True, timeout=120)
    assert gathered.returncode == 0, gathered.stderr
    assert "| instrument |" in gathered.stdout and "| key |" not in gathered.stdout
    assert "1 job folder(s) without results.json" in gathered.stdout and str(sweep / "1") in gathered.stdout
    assert "a probe job folder without results.json" in gathered.stderr, "logged, not only written"

    empty = subprocess.run(["music-ssl-probe", "--gather", str(corpus)], cwd=tmp_path, env=command_env(),
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 1 and empty.stderr.strip().splitlines()[-1] == (
        f"error: no results.json under {corpus}: a sweep's jobs write one each (music-ssl-probe -m …); are they "
        "still running?")


def launch_settings(cfg) -> dict:
    """A composed config's settings outside ``hydra``, and its launcher's, as {dotted key: value}."""
    from omegaconf import OmegaConf

    def flat(node: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    settings = OmegaConf.to_container(cfg, resolve=False)
    settings["hydra"] = {"launcher": settings["hydra"]["launcher"]}
    return flat(settings)


def differing(a: dict, b: dict) -> set:
    return {k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>")}


def test_the_cpu_slurm_run_differs_from_the_gpu_runs_only_in_resources():
    """What the tests submit (``run/slurm_cpu.yaml``) and what a GPU user submits (``run/slurm_1.yaml``) differ only
    in the lines slurm_cpu.yaml marks ``resources`` (its time limit among them): same launcher, same rendezvous, same
    requeue, same thread count per task (the task's CPUs), same model and data settings."""
    cpu = launch_settings(compose_with_hydra("music2vec_base", "+run=slurm_cpu"))
    gpu = launch_settings(compose_with_hydra("music2vec_base", "+run=slurm_1"))
    assert differing(cpu, gpu) == {
        "common.cpu", "distributed_training.distributed_backend", "distributed_training.distributed_world_size",
        "hydra.launcher.tasks_per_node", "hydra.launcher.gpus_per_node", "hydra.launcher.cpus_per_task",
        "hydra.launcher.mem_gb", "hydra.launcher.timeout_min"}
    assert cpu["hydra.launcher._target_"] == gpu["hydra.launcher._target_"]
    assert cpu["hydra.launcher.max_num_timeout"] == gpu["hydra.launcher.max_num_timeout"] == 30


def test_the_probe_slurm_runs_differ_only_in_resources():
    from hydra import compose, initialize_config_dir

    from music_ssl.core.resources import PROBE_CONFIG_DIR
    from music_ssl.probe.config import register_schema

    register_schema()
    with initialize_config_dir(config_dir=str(PROBE_CONFIG_DIR), version_base=None):
        cpu, gpu = (launch_settings(compose(config_name="demo", overrides=[f"+run={run}", "data_root=x"],
                                            return_hydra_config=True)) for run in ("slurm_cpu", "slurm_gpu"))
    assert differing(cpu, gpu) == {"device", "hydra.launcher.gpus_per_node", "hydra.launcher.cpus_per_task"}
    assert cpu["hydra.launcher._target_"].endswith("SlurmLauncher") and cpu["device"] == "cpu"
