"""Pretraining throughput: our music2vec / MusicHuBERT against stock fairseq data2vec_audio / hubert, same run.

Each arm builds fairseq's real Trainer (optimizer, fp16/bf16 handling, EMA) from a config of
config/pretrain, feeds it batches made by the real dataset from synthetic audio, and times
``trainer.train_step`` (data loading excluded: fairseq does it in worker processes). FLOPs per step are
counted with ``torch.utils.flop_counter`` over one real step (``training_step_flops``, shared with the
time-to-quality benchmark); MFU = FLOP/s ÷ peak (989 TFLOP/s, H100 bf16 dense).

    python benchmarks/train_throughput.py                       # GPU: base models, 30-s and mixed 4-30 s clips
    python benchmarks/train_throughput.py --preset tiny --steps 3 --clips 8   # CPU smoke run

Stock arms use fairseq's fp16 (as its recipes); ours use bf16 autocast with fp32 weights and the speed options
in ``OUR_MODEL_OPTIONS`` / ``OUR_TASK_OPTIONS`` (SDPA attention, fp32 positional conv, seeded torch masks, shape
bucketing). Prints one row per arm and the ratio ours / stock for each (model family, max_tokens, clip set).
"""
import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import music_ssl  # noqa: E402,F401
from music_ssl.demo.time_to_quality import demo_batches, training_step_flops  # noqa: E402
from music_ssl.tasks import fields_beyond_stock  # noqa: E402

PEAK_FLOPS = 989e12  # H100 SXM bf16 dense
PRESETS = {  # family -> (our config, stock model name, stock task name)
    "base": {"hubert": "music_hubert_k500_mfcc39", "data2vec": "music2vec_base"},
    "tiny": {"hubert": "music_hubert_tiny", "data2vec": "music2vec_tiny"},
}
STOCK = {"hubert": ("hubert", "hubert_pretraining"), "data2vec": ("data2vec_audio", "audio_pretraining")}
# the speed options of the "ours" arms (music_ssl/models/fast_paths.py, masking.py, data/bucketing.py);
# required_seq_len_multiple=1 drops the one masked pad frame that odd frame counts get (exact: it is masked and cut)
OUR_MODEL_OPTIONS = {"sdpa_attention": True, "pos_conv_fp32": True, "seeded_masks": True, "required_seq_len_multiple": 1}
OUR_TASK_OPTIONS = {"bucket_seconds": 2.0}


def write_corpus(root: Path, clips: int, mixed: bool, crop_seconds: float, k: int = 500) -> Path:
    """``clips`` noise clips (all ``crop_seconds`` long, or 4..crop_seconds s when ``mixed``) + 50 Hz labels."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    rows, labels = [], []
    for i in range(clips):
        seconds = rng.uniform(min(4.0, crop_seconds / 2), crop_seconds) if mixed else crop_seconds
        n = int(seconds * 16000)
        sf.write(root / f"{i}.flac", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        rows.append(f"{i}.flac\t{n}")
        labels.append(" ".join(map(str, rng.integers(0, k, int(np.ceil(n / 320))))))
    (root / "train.tsv").write_text(f"{root}\n" + "\n".join(rows) + "\n")
    (root / "train.km").write_text("\n".join(labels) + "\n")
    (root / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(k)))
    return root


def compose(name: str, overrides: list):
    from fairseq.dataclass.initialize import hydra_init
    from hydra import compose as hydra_compose, initialize_config_dir

    hydra_init(name)
    with initialize_config_dir(config_dir=str(REPO / "config" / "pretrain"), version_base="1.1"):
        cfg = hydra_compose(config_name=name, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def arm_config(family: str, preset: str, stock: bool, data: Path, max_tokens: int, crop_seconds: float, gpu: bool):
    """A resolved fairseq config for one arm: ours (bf16 autocast) or stock (fp16, stock model/task names)."""
    overrides = [f"task.data={data}", f"dataset.max_tokens={max_tokens}", "distributed_training.distributed_world_size=1",
                 f"common.cpu={not gpu}", "common.fp16=false", "common.bf16=false"]
    if family == "hubert":
        overrides += [f"task.label_dir={data}", "task.label_rate=50"]
    cfg = compose(PRESETS[preset][family], overrides)
    cfg["task"]["crop_seconds"] = crop_seconds
    cfg["task"]["max_sample_size"] = None
    if stock:
        ours = cfg["task"]["_name"]
        cfg["model"]["_name"], cfg["task"]["_name"] = STOCK[family]
        cfg["task"]["max_sample_size"] = int(crop_seconds * 16000)
        for key in fields_beyond_stock(ours):
            cfg["task"].pop(key, None)
        cfg["common"]["fp16"] = gpu
    else:
        cfg["task"]["bf16_autocast"] = gpu
        cfg["task"].update(OUR_TASK_OPTIONS, bucket_seconds=min(OUR_TASK_OPTIONS["bucket_seconds"], crop_seconds / 4))
        cfg["model"].update(OUR_MODEL_OPTIONS, mask_seed=cfg["common"]["seed"])
    cfg["dataset"]["num_workers"] = 0
    return OmegaConf.create(cfg)


def run_arm(cfg, steps: int, warmup: int) -> dict:
    """Time ``steps`` train steps after ``warmup``; returns audio-s/s, ms/step and MFU."""
    from fairseq import tasks
    from fairseq.trainer import Trainer

    task = tasks.setup_task(cfg.task)
    model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    samples = demo_batches(trainer, warmup + steps + 1, full_only=False)  # fairseq's batches, cycled
    for sample in samples[:warmup]:
        trainer.train_step([sample])
    flops = training_step_flops(trainer, samples[warmup])["flops"]  # one more update, not timed
    samples = samples[warmup + 1:]
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start, audio = time.perf_counter(), 0.0
    for sample in samples:
        trainer.train_step([sample])
        audio += sample["net_input"]["source"].numel() / 16000  # cropped batches hold no padding
    sync()
    seconds = time.perf_counter() - start
    return {"audio_s_per_s": audio / seconds, "ms_per_step": 1000 * seconds / steps,
            "mfu": flops * steps / seconds / PEAK_FLOPS}


def main(preset="base", steps=20, warmup=5, clips=64, crop_seconds=30.0, max_tokens=(1400000, 5600000),
         families=("hubert", "data2vec"), mixed=(False, True)):
    gpu = torch.cuda.is_available()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for is_mixed in mixed:
            data = write_corpus(Path(tmp) / f"mixed{int(is_mixed)}", clips, is_mixed, crop_seconds)
            for family in families:
                for tokens in max_tokens:
                    result = {}
                    for stock in (True, False):
                        cfg = arm_config(family, preset, stock, data, tokens, crop_seconds, gpu)
                        result[stock] = run_arm(cfg, steps, warmup)
                        rows.append((family, "stock" if stock else "ours", tokens, is_mixed, result[stock]))
                    ratio = result[False]["audio_s_per_s"] / result[True]["audio_s_per_s"]
                    logging.info("%s max_tokens=%d mixed=%s: ours/stock = %.2fx", family, tokens, is_mixed, ratio)
                    rows[-1][-1]["ratio"] = ratio
    print(f"device: {torch.cuda.get_device_name() if gpu else 'cpu'}; preset {preset}; {steps} timed steps")
    print("| family | arm | max_tokens | clips | audio-s/s | ms/step | MFU | ours/stock |")
    print("|---|---|---|---|---|---|---|---|")
    for family, arm, tokens, is_mixed, r in rows:
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        print(f"| {family} | {arm} | {tokens} | {'4-30 s' if is_mixed else f'{crop_seconds:g} s'} | "
              f"{r['audio_s_per_s']:.1f} | {r['ms_per_step']:.1f} | {100 * r['mfu']:.1f}% | {ratio} |")
    return rows


def cli():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="base")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per arm (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--clips", type=int, default=64, help="synthetic clips per corpus (default 64)")
    parser.add_argument("--crop-seconds", dest="crop_seconds", type=float, default=30.0)
    parser.add_argument("--max-tokens", dest="max_tokens", type=int, nargs="+", default=[1400000, 5600000])
    parser.add_argument("--families", nargs="+", default=["hubert", "data2vec"], choices=["hubert", "data2vec"])
    parser.add_argument("--no-mixed", dest="mixed", action="store_const", const=(False,), default=(False, True))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main(**vars(parser.parse_args()))


if __name__ == "__main__":
    cli()
