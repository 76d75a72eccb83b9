"""Every GPU measurement of issue #15 in one run of at most ~8 minutes: one JSON and one markdown table in ``--out``.

Sections (run short ones first; each time-boxed: an arm that would start after its section's budget is recorded as
skipped; the train section gets what is left of ``total_s``):

* ``train``: ``train_throughput`` arms, stock fairseq (fp16) vs ours (bf16 autocast + SDPA attention, fp32
  positional conv, seeded torch masks, shape bucketing), music_hubert and music2vec base, max_tokens 1.4M and
  5.6M, 30-s crops and mixed 4–30 s clips: audio-s/s, ms/step, MFU, ours/stock.
* ``kmeans``: fit + apply on the GPU, 1M×39 k=500 (with sklearn MiniBatchKMeans, fairseq settings, same run)
  and a 768-d case (ours only); apply on the CPU (1 thread) against sklearn ``predict``.
* ``probe``: the 216-config JukeMIR grid on a GTZAN-sized task (batched; sequential sampled and extrapolated).
* ``masks``: span masks per batch, ours on the device vs fairseq's numpy.
* ``ttq`` (issue #24, run last, its own budget): seconds per update of music2vec_base and music2vec2_base on one
  device at their shipped per-GPU batch (fp16 as their recipes, a few updates timed in alternating rounds), and the
  GPU time-to-quality ratio = the CPU update ratio (music2vec2's updates to reach music2vec's probe scores ÷
  music2vec's, measured by benchmarks/time_to_quality.py on the tiny models; ``--ttq-update-ratio``) × the GPU
  seconds-per-update ratio (music2vec2 ÷ music2vec). Target: <= 1/3.

Still to measure on a GPU (not adopted without a figure): fused AdamW (torch ``AdamW(fused=True)`` in place of
fairseq's ``adam``), removing host syncs (``.item()``) from the logged step, pinned-memory loading with workers.

    python benchmarks/device_run.py --out $OUT             # GPU (benchmarks/device_run.sh installs the wheels first)
    python benchmarks/device_run.py --out /tmp/x --smoke   # every arm at tiny size on the CPU (< 3 min)
"""
import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

logger = logging.getLogger("device_run")

# music2vec2 tiny's updates to reach music2vec tiny's probe scores on key, pitch and beat ÷ music2vec tiny's update
# count, measured on the 2-core CPU VM by benchmarks/time_to_quality.py (README, "Time to quality: music2vec2").
# 0.5: with data2vec 2.0's 8 masked copies music2vec2 tiny reached music2vec tiny's 1,000-update scores on all three
# at 500 updates, seeds 1 and 2 (1,000 updates, probed every 100); --ttq-update-ratio passes another measurement.
CPU_UPDATE_RATIO = 0.5

FULL = {
    "total_s": 420,  # the train section gets what is left of this (an arm started in time may run ~20 s over)
    "budget_s": {"train": 300, "kmeans": 90, "probe": 80, "masks": 15, "ttq": 90},
    "train": dict(preset="base", steps=8, warmup=3, clips=48, crop_seconds=30.0, max_tokens=[1_400_000, 5_600_000],
                  families=["hubert", "data2vec"]),
    "kmeans_gpu": [("1000000,39,500", False), ("500000,768,2000", True)],  # (case, skip sklearn)
    "kmeans_cpu_apply": ["200000,39,500"],
    "probe": dict(sequential=4),
    "masks_repeats": 20,
    "ttq": dict(configs={"music2vec": "music2vec_base", "music2vec2": "music2vec2_base"}, clips=24,
                crop_seconds=30.0, rounds=2, steps=3),
}
SMOKE = {
    "total_s": 170,
    "budget_s": {"train": 120, "kmeans": 30, "probe": 30, "masks": 10, "ttq": 40},
    "train": dict(preset="tiny", steps=1, warmup=1, clips=6, crop_seconds=2.0, max_tokens=[64000],
                  families=["hubert", "data2vec"]),
    "kmeans_gpu": [("4000,39,16", False), ("2000,64,16", True)],
    "kmeans_cpu_apply": ["4000,39,16"],
    "probe": dict(clips=120, layers=2, dim=16, configs=4, max_epochs=3.0, patience=4, sequential=2),
    "masks_repeats": 2,
    "ttq": dict(configs={"music2vec": "music2vec_tiny", "music2vec2": "music2vec2_tiny"}, clips=8,
                crop_seconds=2.0, rounds=1, steps=1),
}


def bench(name: str):
    """Import a benchmark module of this folder (inside a section, so that a broken one fails only its section)."""
    import importlib

    return importlib.import_module(name)


class Section:
    """A time-boxed section: ``open_for_more()`` is False once its budget is spent."""

    def __init__(self, name: str, budget_s: float, results: dict):
        self.name, self.budget_s, self.start = name, budget_s, time.perf_counter()
        self.save = results["env"]["save"]  # writes the JSON + table so far (a killed run keeps its figures)
        self.rows, self.skipped, self.errors = [], [], []
        results[name] = {"rows": self.rows, "skipped": self.skipped, "errors": self.errors, "budget_s": budget_s}

    def open_for_more(self) -> bool:
        return time.perf_counter() - self.start < self.budget_s

    def run(self, label: str, fn):
        """Run one arm unless the budget is spent; a failing arm is recorded (with its traceback) and skipped."""
        if not self.open_for_more():
            self.skipped.append(label)
            logger.warning("%s: %s skipped (budget %d s spent)", self.name, label, self.budget_s)
            return None
        try:
            result = fn()
            self.save()
            return result
        except Exception as err:  # one broken arm must not cost the whole device run
            self.errors.append({"arm": label, "error": f"{type(err).__name__}: {err}",
                                "traceback": traceback.format_exc()[-3000:]})
            logger.exception("%s: %s failed", self.name, label)
            self.save()
            return None


def train_section(plan: dict, results: dict) -> None:
    section = Section("train", plan["budget_s"]["train"], results)
    tt = section.run("import", lambda: bench("train_throughput"))
    if tt is None:
        return
    spec, gpu = plan["train"], torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        for mixed in (False, True):
            data = tt.write_corpus(Path(tmp) / f"mixed{int(mixed)}", spec["clips"], mixed, spec["crop_seconds"])
            for family in spec["families"]:
                for tokens in spec["max_tokens"]:
                    measured = {}
                    for stock in (True, False):
                        arm = dict(family=family, arm="stock" if stock else "ours", max_tokens=tokens,
                                   clips="mixed" if mixed else f"{spec['crop_seconds']:g} s")
                        cfg = tt.arm_config(family, spec["preset"], stock, data, tokens, spec["crop_seconds"], gpu)
                        result = section.run(str(arm), lambda: tt.run_arm(cfg, spec["steps"], spec["warmup"]))
                        if result:
                            measured[stock] = result
                            section.rows.append({**arm, **result})
                    if len(measured) == 2:
                        section.rows[-1]["ours_over_stock"] = measured[False]["audio_s_per_s"] / measured[True]["audio_s_per_s"]


def kmeans_section(plan: dict, results: dict) -> None:
    section = Section("kmeans", plan["budget_s"]["kmeans"], results)
    kb = section.run("import", lambda: bench("kmeans_bench"))
    if kb is None:
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for case, skip in plan["kmeans_gpu"]:
        rows = section.run(f"{case} on {device}", lambda: kb.main(case=[case], device=device, skip_sklearn=skip))
        section.rows.extend(rows or [])
    for case in plan["kmeans_cpu_apply"]:
        rows = section.run(f"{case} apply on cpu", lambda: kb.main(case=[case], device="cpu", threads=1,
                                                                      apply_only=True))
        section.rows.extend(rows or [])


def probe_section(plan: dict, results: dict) -> None:
    section = Section("probe", plan["budget_s"]["probe"], results)
    pb = section.run("import", lambda: bench("probe_bench"))
    if pb is None:
        return
    row = section.run("jukemir grid", lambda: pb.main(**plan["probe"]))
    if row:
        section.rows.append(row)


def masks_section(plan: dict, results: dict) -> None:
    section = Section("masks", plan["budget_s"]["masks"], results)
    mb = section.run("import", lambda: bench("mask_bench"))
    if mb is None:
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = section.run(f"masks on {device}", lambda: mb.main(device=device, repeats=plan["masks_repeats"]))
    section.rows.extend(rows or [])


def ttq_section(plan: dict, results: dict) -> None:
    """Seconds per update of music2vec vs music2vec2 (base on a GPU), interleaved in one process, and the GPU
    time-to-quality ratio (module docstring)."""
    section = Section("ttq", plan["budget_s"]["ttq"], results)
    ttq = section.run("import", lambda: bench("music_ssl.demo.time_to_quality"))
    tt = section.run("import train_throughput", lambda: bench("train_throughput"))
    if ttq is None or tt is None:
        return
    spec, gpu = plan["ttq"], torch.cuda.is_available()
    overrides = ["distributed_training.distributed_world_size=1", f"common.fp16={str(gpu).lower()}",
                 "common.bf16=false", "dataset.num_workers=0", f"task.crop_seconds={spec['crop_seconds']}"]

    def measure() -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            data = tt.write_corpus(Path(tmp) / "ttq", spec["clips"], False, spec["crop_seconds"])
            trainers = {m: ttq.trainer_for(cfg, data, overrides=overrides, cpu=not gpu)
                        for m, cfg in spec["configs"].items()}
            samples = {m: ttq.demo_batches(t, spec["rounds"] * spec["steps"] + 1) for m, t in trainers.items()}
            seconds = ttq.interleaved_step_seconds(trainers, samples, spec["rounds"], spec["steps"])
            return {m: {"config": spec["configs"][m], "s_per_update": seconds[m],
                        "audio_s_per_update": ttq.batch_audio_seconds(samples[m][0]),
                        "clips_per_update": int(samples[m][0]["net_input"]["source"].size(0))} for m in seconds}

    measured = section.run("music2vec vs music2vec2 seconds per update", measure)
    if not measured:
        return
    update_ratio = plan.get("ttq_update_ratio", CPU_UPDATE_RATIO)
    step_ratio = measured["music2vec2"]["s_per_update"] / measured["music2vec"]["s_per_update"]
    for model, row in measured.items():
        section.rows.append({"model": model, **row, "audio_s_per_s": row["audio_s_per_update"] / row["s_per_update"]})
    section.rows.append({"model": "music2vec2 / music2vec", "s_per_update": step_ratio,
                         "cpu_update_ratio": update_ratio, "gpu_ttq_ratio": update_ratio * step_ratio,
                         "target_met": bool(update_ratio * step_ratio <= 1 / 3)})


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown(results: dict) -> str:
    """One table per section (its rows' keys as columns), then skipped and failed arms."""
    lines = [f"# device run — {results['env']['device']}, torch {results['env']['torch']}, "
             f"{results['env']['wall_s']:.0f} s{' (smoke)' if results['env']['smoke'] else ''}", ""]
    for name in ("train", "kmeans", "probe", "masks", "ttq"):
        section = results.get(name)
        if not section:
            continue
        lines += [f"## {name}", ""]
        rows = [{k: v for k, v in row.items() if not isinstance(v, (list, dict))} for row in section["rows"]]
        if rows:
            keys = list(dict.fromkeys(k for row in rows for k in row))
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(fmt(row.get(k, "")) for k in keys) + " |" for row in rows]
        for arm in section["skipped"]:
            lines.append(f"- skipped (budget): {arm}")
        for error in section["errors"]:
            lines.append(f"- FAILED: {error['arm']}: {error['error']}")
        lines.append("")
    return "\n".join(lines)


def main(out: str, smoke: bool = False, sections=("masks", "kmeans", "probe", "train", "ttq"),
         ttq_update_ratio: float = CPU_UPDATE_RATIO) -> dict:
    plan = {**(SMOKE if smoke else FULL), "ttq_update_ratio": ttq_update_ratio}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.processor() or 'x86'})"
    results = {"env": {"device": device, "torch": torch.__version__, "python": platform.python_version(),
                       "smoke": smoke}}

    def save() -> None:
        results["env"]["wall_s"] = time.perf_counter() - start
        shown = {**results, "env": {k: v for k, v in results["env"].items() if k != "save"}}
        (out / "device_run.json").write_text(json.dumps(shown, indent=1, default=str))
        (out / "device_run.md").write_text(markdown(shown))

    results["env"]["save"] = save
    runners = {"train": train_section, "kmeans": kmeans_section, "probe": probe_section, "masks": masks_section,
               "ttq": ttq_section}
    for name in sections:  # the short sections first; train gets the rest of the total
        logger.info("section %s", name)
        if name == "train":
            left = plan["total_s"] - (time.perf_counter() - start)
            plan = {**plan, "budget_s": {**plan["budget_s"], "train": max(30, min(plan["budget_s"]["train"], left))}}
        runners[name](plan, results)
        save()
    results["env"].pop("save")
    print(markdown(results))
    return results


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for device_run.json and device_run.md")
    p.add_argument("--smoke", action="store_true", help="every arm at tiny size (CPU rehearsal, < 3 min)")
    p.add_argument("--sections", nargs="+", default=["masks", "kmeans", "probe", "train", "ttq"],
                   choices=["train", "kmeans", "probe", "masks", "ttq"], help="which sections, in this order")
    p.add_argument("--ttq-update-ratio", dest="ttq_update_ratio", type=float, default=CPU_UPDATE_RATIO,
                   help="music2vec2's updates to music2vec's probe scores ÷ music2vec's, from "
                        f"benchmarks/time_to_quality.py on the CPU (default {CPU_UPDATE_RATIO}: the README's)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main(**vars(p.parse_args()))


if __name__ == "__main__":
    cli()
