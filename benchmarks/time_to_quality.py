"""Time to quality (issue #24): music2vec2 tiny (data2vec 2.0 recipe) vs music2vec tiny on the demo corpus.

Trains both tiny models with the same seed (the demo's training stage, a checkpoint every ``--interval`` updates),
probes every checkpoint as the demo does (config/probe/demo.yaml: z-scored MuLaP MLP; key, pitch, beat) and reports
the wall seconds and updates each model needs to reach music2vec's ``--updates``-update probe scores, with the
rule: reached = the checkpoint's 95% CI overlaps music2vec@updates' CI or lies above it; time to quality = the first
saved checkpoint that has. Also FLOPs per update and per audio-second of both (torch FlopCounterMode over one real
training step on one demo-sized batch) and seconds per update timed interleaved in one process. Prints the ratio
music2vec2 / music2vec wall time to quality per seed and task (issue target: <= 1/3). The logic is
music_ssl/demo/time_to_quality.py.

    python benchmarks/time_to_quality.py                       # 1000 updates, every 100, seeds 1 2 (demo_out/)
    python benchmarks/time_to_quality.py --quick --out-dir /tmp/ttq   # smoke test: tiny corpus, 4 updates

Writes <out-dir>/time_to_quality/{report.md, results.json, curves.png}; the corpus, manifest, training runs and
probes of an earlier run with the same settings are reused (``make demo``'s corpus too, with the same --out-dir).
"""
import argparse
import logging
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import music_ssl  # noqa: E402,F401
from music_ssl.demo.pipeline import DemoSettings  # noqa: E402
from music_ssl.demo.time_to_quality import (TimeToQualitySettings, costs_table, markdown_table,  # noqa: E402
                                            quick_settings, run_benchmark, verdict_lines)


def settings_from(args: argparse.Namespace) -> TimeToQualitySettings:
    if args.quick:
        return quick_settings(args.out_dir)
    demo = DemoSettings(out_dir=args.out_dir, n_pieces=args.n_pieces, n_notes=args.n_notes,
                        probe_seeds=args.probe_seeds, probe_epochs=args.probe_epochs, device=args.device)
    return TimeToQualitySettings(demo=demo, seeds=tuple(args.seeds), updates=args.updates, interval=args.interval,
                                 reference_interval=args.reference_interval, timing_rounds=args.timing_rounds,
                                 probe_layers=args.probe_layers, probe_budget_s=args.probe_budget_s,
                                 train_only=args.train_only, candidate_overrides=tuple(args.music2vec2_override))


def main(args: argparse.Namespace) -> dict:
    results = run_benchmark(settings_from(args))
    if not results:  # --train-only
        return results
    print(markdown_table(results))
    print(costs_table(results["costs"]))
    print("\n".join(verdict_lines(results)))
    return results


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", dest="out_dir", type=Path, default=Path("demo_out"),
                   help="the demo folder: corpus and manifest reused from `make demo` (default demo_out)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="training seeds (1 2)")
    p.add_argument("--updates", type=int, default=1000,
                   help="updates per run; music2vec's scores at this count are the reference (1000)")
    p.add_argument("--interval", type=int, default=100, help="checkpoint and probe every N updates (100)")
    p.add_argument("--reference-interval", dest="reference_interval", type=int, default=None,
                   help="probe music2vec's checkpoints every N updates (a multiple of --interval; default: --interval; "
                        "its last checkpoint, the reference, is always probed)")
    p.add_argument("--probe-layers", dest="probe_layers", default=None,
                   help="probe.protocol.layers (default: the demo's all+sum; sum = the weighted sum alone, 6x fewer "
                        "probes)")
    p.add_argument("--probe-budget-s", dest="probe_budget_s", type=float, default=None,
                   help="start no new probe after this many seconds of probing per seed (finished probes are "
                        "always used; the report lists what was left out). Default: probe every checkpoint")
    p.add_argument("--music2vec2-override", dest="music2vec2_override", action="append", default=[],
                   metavar="KEY=VALUE", help="a hydra override of music2vec2_tiny (repeatable; a recipe variant, e.g. "
                                             "model.clone_batch=8): its runs and report get folders of their own")
    p.add_argument("--train-only", dest="train_only", action="store_true",
                   help="run the training stages and stop (train the next seed while another process probes)")
    p.add_argument("--n-pieces", dest="n_pieces", type=int, default=400, help="corpus pieces (the demo's 400)")
    p.add_argument("--n-notes", dest="n_notes", type=int, default=600, help="corpus single notes (the demo's 600)")
    p.add_argument("--probe-seeds", dest="probe_seeds", type=int, default=3, help="seeds per probe (the demo's 3)")
    p.add_argument("--probe-epochs", dest="probe_epochs", type=int, default=None,
                   help="most epochs per probe (default: config/probe/demo.yaml's)")
    p.add_argument("--timing-rounds", dest="timing_rounds", type=int, default=3,
                   help="rounds of the interleaved seconds-per-update timing (0 = skip; 3)")
    p.add_argument("--device", default="cpu", help="training and probing device (cpu; auto | cuda | cuda:N)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 24-clip corpus, 4 updates checkpointed every 2, seed 1, 2 probe seeds (other "
                        "size options ignored)")
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    main(p.parse_args())


if __name__ == "__main__":
    cli()
