"""Probe configs and the protocol presets of the literature (``ma2023``, ``mulap``, ``marble``, ``jukemir``).

A protocol is a grid of :class:`ProbeConfig` (one probe each), shared :class:`TrainSettings`, the
:class:`HeadSettings` (which hidden states the weighted sum reads, how its weights start, where dropout acts), the
layer options to probe and the seeds, plus ``rules``: per task type (or task name) the pooling / encoding / song
aggregation / beat scoring / split the paper used, and ``per_task`` overrides of the train
settings and the grid (MARBLE's per-task schedules). The grid is crossed with the layers (each hidden state and/or
the softmax-weighted sum, layer -1) and with the seeds.

Fidelity (ARCHITECTURE.md): a preset named after a paper reproduces how its published number was computed; where
the paper's text and the authors' released code disagree, the default follows the code and the text's reading is
one documented switch away. Every preset carries a table, one row per setting: the paper's text · the authors'
code (repository file) · ours; ``music-ssl-probe --list-protocols`` prints them.

Hidden states (``music_ssl.models.hidden_states``): state 0 is the Transformer input (the CNN output after the
feature layer norm, the projection to C, the positional convolution and, for post-LN models, the encoder layer
norm: Hugging Face's ``hidden_states[0]``); state i is the output of Transformer layer i. The raw 512-d CNN
output is a separate feature (``source.cnn: true``), since its width differs.
"""
import itertools
import textwrap
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Optional

from .errors import ProbeConfigError

WEIGHTED_SUM = -1  # ProbeConfig.layer value: softmax-weighted sum of the hidden states (HeadSettings.sum_states)
SUM_STATES = ("all", "layers")  # HeadSettings.sum_states
MIX_INITS = ("zeros", "normal")  # HeadSettings.mix_init


@dataclass(frozen=True)
class ProbeConfig:
    """One probe.

    Attributes:
        layer: hidden-state index (0 = the Transformer input, i = output of Transformer layer i) or
            ``WEIGHTED_SUM`` (-1).
        hidden: 0 = linear probe, else one ReLU hidden layer of this width (MLP).
        standardize: z-score each feature with train-split statistics.
        batch_size: items per step (sampled without replacement within a step, as JukeMIR).
        lr: Adam learning rate (the initial one when ``TrainSettings.lr_factor`` is set).
        dropout: dropout rate on the input (and the hidden layer). l2: Adam weight decay (L2 added to the
            gradient, ``torch.optim.Adam(weight_decay=l2)``).
        seed: changes initial weights, batches and dropout masks.
    """
    layer: int = 0
    hidden: int = 512
    standardize: bool = True
    batch_size: int = 64
    lr: float = 1e-3
    dropout: float = 0.5
    l2: float = 0.0
    seed: int = 0

    def without_seed(self) -> tuple:
        return tuple(v for k, v in asdict(self).items() if k != "seed")


@dataclass
class TrainSettings:
    """How long to train, how to early-stop and how to reduce the learning rate (shared by a run's probes).

    Attributes:
        eval_every: validate every this many steps (``eval_every_epochs`` overrides it when set).
        eval_every_epochs: validate every this many epochs of the *smallest* batch size in the grid.
        patience: stop after this many validations without improvement (None = never stop early; the best
            validation point is still kept).
        max_epochs: stop after this many passes over the train split (per probe, by its batch size).
        max_steps: hard cap on steps (None = none).
        lr_factor / lr_patience: reduce on plateau — after more than ``lr_patience`` validations without
            improvement the probe's learning rate is multiplied by ``lr_factor`` and the count restarts
            (``torch.optim.lr_scheduler.ReduceLROnPlateau(mode="max", threshold=lr_threshold)``); None = constant.
        lr_threshold: the scheduler's own notion of improvement, relative (torch's ``threshold_mode="rel"``): a
            validation counts as better for the LR schedule only above ``best * (1 + lr_threshold)``; 0 = any
            higher score (torch's default is 1e-4, which MARBLE's and MuLaP's ReduceLROnPlateau keep). Early
            stopping and the kept best point always use "strictly higher".
    """
    eval_every: int = 8
    eval_every_epochs: Optional[float] = None
    patience: Optional[int] = 256
    max_epochs: Optional[float] = 500
    max_steps: Optional[int] = None
    lr_factor: Optional[float] = None
    lr_patience: Optional[int] = None
    lr_threshold: float = 0.0


@dataclass(frozen=True)
class HeadSettings:
    """How every probe of a run reads its features (shared by the grid; not part of a probe's identity).

    Attributes:
        sum_states: which hidden states the weighted sum (layer -1) mixes: "all" = every state (JukeMIR-style;
            Ma et al. 2023 §4.1's text: the CNN-side state 0 and the 12 Transformer outputs) or "layers" = the
            Transformer outputs only, state 0 (named "input") left out (MARBLE's code: ``feature[1:]`` in every
            ``benchmark/tasks/*/*_dataset.py`` and ``bert(...)[1:]`` in ``benchmark/models/probers.py``, an
            aggregator of ``n_tranformer_layer`` = 12 weights).
        mix_init: the weighted sum's softmax logits start at "zeros" (equal weights) or "normal" (N(0, 1) per
            probe, MARBLE's ``nn.Parameter(torch.randn(...))`` in ``probers.py`` ``init_aggregator``).
        input_dropout: dropout on the probe's input as well as after the hidden layer (JukeMIR's ``SimpleMLP``,
            ``jukemir/probe/__init__.py``), or False: only after the hidden layer's ReLU (MARBLE's
            ``ProberForBertUtterCLS.forward``). A linear probe with ``input_dropout=False`` has no dropout.
    """
    sum_states: str = "all"
    mix_init: str = "zeros"
    input_dropout: bool = True

    def __post_init__(self):
        if self.sum_states not in SUM_STATES or self.mix_init not in MIX_INITS:
            raise ProbeConfigError(f"head settings: sum_states must be one of {SUM_STATES} (got "
                                   f"{self.sum_states!r}), mix_init one of {MIX_INITS} (got {self.mix_init!r}).")

    def sum_from(self, layer_names: list) -> int:
        """Index of the first hidden state the weighted sum reads: 1 when ``sum_states="layers"`` and state 0 is
        the Transformer input (named "input"), else 0 (the sum reads ``x[sum_from:]``)."""
        return int(self.sum_states == "layers" and bool(layer_names) and layer_names[0] == "input")


def with_overrides(obj, overrides: Optional[dict], what: str):
    """``dataclasses.replace(obj, **overrides)``; unknown keys raise one :class:`ProbeConfigError` naming them."""
    known = {f.name for f in fields(obj)}
    bad = sorted(set(overrides or {}) - known)
    if bad:
        raise ProbeConfigError(f"probe config: unknown {what} keys {bad}; known: {sorted(known)}.")
    return replace(obj, **(overrides or {}))


@dataclass
class Protocol:
    """A preset: grid, train settings, layer option, seeds and task rules.

    ``rules`` maps a task name (``emomusic``) or a task type (``multiclass``) to settings among ``RULE_KEYS``
    (and, for a task name, the loader's own options such as VocalSet's ``split``); a name wins over a type, and a
    task entry in the probe config wins over both. ``per_task`` maps a task name to ``{"train": TrainSettings
    overrides, "probe": ProbeConfig overrides of every grid config}`` (the run's ``protocol.train`` wins over
    them). ``rows``: the table (setting, paper text, authors' code, ours); ``table``: a docstring table instead.
    """
    name: str
    grid: list  # ProbeConfig with layer/seed placeholders
    settings: TrainSettings
    layers: str = "all"  # "all" | "all+sum" | "sum" | "last" (see resolve_layers)
    seeds: list = field(default_factory=lambda: [0])
    rules: dict = field(default_factory=dict)
    source: str = ""  # one line: where the protocol comes from
    table: str = ""  # a docstring table (setting · paper · where · ours), printed when there are no rows
    head: HeadSettings = field(default_factory=HeadSettings)
    per_task: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)  # (setting, paper text, authors' code, ours)

    def rules_for(self, task_name: str, task_type: str) -> dict:
        return {**self.rules.get(task_type, {}), **self.rules.get(task_name, {})}

    def settings_for(self, task_name: str, overrides: Optional[dict] = None) -> TrainSettings:
        """The train settings of one task: the preset's, its ``per_task`` entry, then the run's ``overrides``."""
        preset = with_overrides(self.settings, self.per_task.get(task_name, {}).get("train"), "per-task train")
        return with_overrides(preset, overrides, "protocol.train")

    def grid_for(self, task_name: str) -> list:
        """The grid of one task: every config with the task's ``per_task`` probe overrides (duplicates dropped)."""
        probe = self.per_task.get(task_name, {}).get("probe")
        if not probe:
            return list(self.grid)
        return list(dict.fromkeys(with_overrides(c, probe, "per-task probe") for c in self.grid))

    def with_standardize(self, standardize: Optional[bool]) -> "Protocol":
        """This preset with every grid config's ``standardize`` set (``None``: unchanged)."""
        if standardize is None:
            return self
        grid = list(dict.fromkeys(replace(c, standardize=bool(standardize)) for c in self.grid))
        return replace(self, grid=grid)


def _jukemir() -> Protocol:
    """JukeMIR (Castellon et al. 2021, §5.2).

    =======================  =================================  ==========  ===================================
    setting                  paper                              where       ours
    =======================  =================================  ==========  ===================================
    grid                     216 configs: standardisation x     §5.2, code  the same 216: the released grid is
                             {linear, MLP-512} x batch {64,256}             _PAPER_GRID of jukemir/probe/
                             x lr {1e-5,1e-4,1e-3} x dropout                __init__.py (p-lambda/jukemir
                             {.25,.5,.75} x L2 {0,1e-4,1e-3}                2415556), which reproduce/
                                                                            4_grid_config.py writes out
    optimiser                Adam                               code        Adam, L2 as weight_decay
    early stopping           on the task metric on valid        §5.2        every 8 steps, stop after 256
                                                                            validations without improvement
                                                                            (released code); max 500 epochs
                                                                            (no cap in JukeMIR)
    selection                best early-stopping score of the   §5.2        the same, per layer option
                             grid -> its test score
    layers                   one layer (Jukebox: 36)            §5.1        every hidden state (and the single
                                                                            feature of Jukebox/CHROMA/MFCC)
    Giantsteps               30-s windows, ensembled to songs   §5.1        30-s windows, ensemble strategy
                                                                            chosen on valid
    seeds                    1                                  —           1
    =======================  =================================  ==========  ===================================
    """
    grid = [ProbeConfig(standardize=s, hidden=h, batch_size=b, lr=lr, dropout=d, l2=l2)
            for s, h, b, lr, d, l2 in itertools.product((False, True), (0, 512), (64, 256), (1e-5, 1e-4, 1e-3),
                                                        (0.25, 0.5, 0.75), (0.0, 1e-4, 1e-3))]
    return Protocol("jukemir", grid, TrainSettings(eval_every=8, patience=256, max_epochs=500), layers="all",
                    source="Castellon et al. 2021 (JukeMIR) §5.2; jukemir_castellon2021.txt",
                    table=_jukemir.__doc__)


MARBLE = "a43992899/MARBLE-Benchmark"  # at d9300e335eefdad8d6b825418e8c44b22d0919c7; files below are relative to it
MULAP = "ilaria-manco/mulap"  # at 022b03486c6bed277d03d3c09e7609c6a8b1b2bd
# MARBLE's per-task schedule: benchmark/tasks/<T>/<T>_base_config.yaml, keys scheduler.lr_scheduler_patience,
# scheduler.earlystop_patience and trainer.max_epochs -> (LR plateau patience, early-stop patience, max epochs)
MARBLE_SCHEDULE = {
    "mtt_top50": (3, 10, 100),  # MTT/MTT_base_config.yaml
    "giantsteps_key": (5, 20, 100),  # GS/GS_base_config.yaml
    "gtzan_genre": (6, 20, 100),  # GTZAN/GTZAN_base_config.yaml
    "gtzan_beat": (6, 20, 100),  # GTZAN/GTZANBT_base_config.yaml
    "emomusic": (5, 20, 100),  # EMO/EMO_base_config.yaml
    "nsynth_instrument": (3, 10, 50),  # NSynth/NSynthI_base_config.yaml
    "nsynth_pitch": (3, 10, 50),  # NSynth/NSynthP_base_config.yaml
    "vocalset_technique": (5, 10, 100),  # VocalSet/VocalSetT_base_config.yaml
    "vocalset_singer": (5, 20, 100),  # VocalSet/VocalSetS_base_config.yaml
    **{f"mtg_{s}": (3, 10, 100) for s in ("top50", "genre", "instrument", "moodtheme")},  # MTG/MTG*_base_config.yaml
}
# the learning rates exp_scripts/probe/probe_m2v.sh (and probe_MERT*.sh) sweep for every task and layer option
MARBLE_LRS = (1e-3, 5e-3, 5e-4, 1e-2, 1e-4, 5e-5)
# VocalSet/preprocess.py cuts 44.1-kHz audio into chunks of sr // 1000 * 3000 = 132000 samples (2.9932 s)
VOCALSET_CHUNK_SECONDS = 44 * 3000 / 44100
# extract_bert_features.py: every file (after crop_to_length_in_sec) goes through Wav2Vec2FeatureExtractor
# (do_normalize, processor_normalize: true in every benchmark/models/*/*.yaml), is cut into
# sliding_window_size_in_sec windows (configs/<model>/<T>.yaml: 30 s, overlap 0) encoded one by one, and a last
# window shorter than 1 s is dropped; the windows are the training items and valid/test outputs are averaged per
# file (train_collate_fn / test_collate_fn + scatter_mean in benchmark/models/probers.py)
# beat training crops encoded alone start on this grid (MARBLE: any start); the encoder sees ~crop / hop times the
# train audio (30-s clips: 5 windows of 10 s, 1.67x), and the probe holds those frames in float32 on its device
BEAT_CROP_HOP_SECONDS = 5.0
MARBLE_WINDOWS = {"pooling": "window", "window_seconds": 30.0, "hop_seconds": 30.0, "aggregate": "mean",
                  "encode": "window", "min_window_seconds": 1.0, "waveform_norm": "file"}


def _marble_rules(emomusic: dict) -> dict:
    """The task rules of MARBLE's code (shared by ``ma2023`` and ``marble``; ``emomusic`` differs)."""
    windows = {kind: dict(MARBLE_WINDOWS) for kind in ("multiclass", "multilabel", "regression")}
    vocalset = {"pooling": "window", "window_seconds": VOCALSET_CHUNK_SECONDS, "hop_seconds": VOCALSET_CHUNK_SECONDS,
                "aggregate": None, "encode": "window", "min_window_seconds": None, "waveform_norm": "window",
                "trim_silence": True, "split": "marble"}
    return {**windows,
            # GS/preprocess.py: non-overlapping 30-s clips, a shorter last one skipped, each clip its own file
            "key": {"pooling": "window", "window_seconds": 30.0, "hop_seconds": 30.0, "encode": "window",
                    "min_window_seconds": None, "waveform_norm": "window"},
            "emomusic": {**MARBLE_WINDOWS, **emomusic},
            "vocalset_technique": dict(vocalset), "vocalset_singer": dict(vocalset),
            # GTZANBT_base_config.yaml (10-s train crops, 30-s valid/test), GTZANBT_dataset.py AudioDataset
            # (neighbours 1 in training only; each crop cut from the audio, z-scored by the processor and encoded
            # alone: beat_crop_encode window, starts on a 5-s grid), GTZANBT_metric.py (±70 ms pooled)
            "beat": {"beat_neighbour_weight": 1.0, "beat_tolerance": 0.07, "beat_average": "pooled",
                     "beat_training": "marble", "beat_crop_seconds": 10.0, "waveform_norm": "file",
                     "beat_crop_encode": "window", "beat_crop_hop_seconds": BEAT_CROP_HOP_SECONDS}}


def _marble_per_task() -> dict:
    return {name: {"train": {"lr_patience": plateau, "patience": stop, "max_epochs": epochs}}
            for name, (plateau, stop, epochs) in MARBLE_SCHEDULE.items()}


MARBLE_HEAD = HeadSettings(sum_states="layers", mix_init="normal", input_dropout=False)
MARBLE_SETTINGS = TrainSettings(eval_every_epochs=1, patience=20, max_epochs=100, lr_factor=0.5, lr_patience=5,
                                lr_threshold=1e-4)
# rows both presets share: (setting, paper text, authors' code, ours)
_MARBLE_ROWS = [
    ("weighted sum", "{sum_text}",
     "the 12 Transformer outputs: feature[1:] (benchmark/tasks/*/*_dataset.py), bert(...)[1:] and an aggregator "
     "of n_tranformer_layer = 12 (benchmark/models/probers.py)",
     "the L Transformer outputs (head.sum_states=layers; state 0, the Transformer input, left out); "
     "protocol.sum_states=all: all L + 1"),
    ("sum weights", "not stated", "softmax of nn.Parameter(torch.randn(1, 12, 1)) (probers.py init_aggregator)",
     "softmax of N(0, 1) logits per probe (head.mix_init=normal)"),
    ("probe", "{probe_text}",
     "hidden_layer_sizes [512], Linear -> ReLU -> dropout .2 -> Linear; no dropout on the input "
     "(configs/music2vec/*.yaml; probers.py ProberForBertUtterCLS.forward)",
     "MLP-512, ReLU, dropout .2 after the hidden layer only (head.input_dropout=false)"),
    ("optimiser, batch", "not stated",
     "torch.optim.Adam, l2_weight_decay 0, batch 64 (benchmark/tasks/*/*_base_config.yaml)",
     "Adam, L2 0, batch 64 items"),
    ("LR schedule", "not stated",
     "ReduceLROnPlateau(max, factor .5, patience per task: MTT, MTG, NSynth 3; EMO, GS, VocalSet 5; GTZAN, "
     "beat 6; torch's threshold 1e-4 rel) on the valid metric each epoch (probers.py configure_optimizers; "
     "*_base_config.yaml scheduler.lr_scheduler_patience)",
     "the same, per task (per_task; lr_threshold 1e-4 as torch's own scheduler)"),
    ("early stopping", "not stated",
     "EarlyStopping on the valid metric, patience MTT, MTG, NSynth, VocalSet technique 10, others 20; the best "
     "valid checkpoint is tested (benchmark/utils/get_callbacks.py, benchmark/probe.py)",
     "the same, per task; best valid point kept (also validated once before training)"),
    ("epochs", "not stated", "max_epochs 100; NSynth 50 (*_base_config.yaml trainer)", "the same, per task"),
    ("waveform", "not stated",
     "Wav2Vec2FeatureExtractor(do_normalize): zero mean, unit variance (eps 1e-7) of each loaded file before "
     "windowing, for every model (processor_normalize: true in benchmark/models/*/*.yaml; "
     "benchmark/models/musichubert_hf/extract_bert_features.py)",
     "the same (waveform_norm=file), instead of the checkpoint's own rule (a MusicHuBERT checkpoint, trained "
     "without normalisation, gets it too); waveform_norm=model: the checkpoint's"),
    ("windows", "{windows_text}",
     "{windows_code}",
     "{windows_ours}"),
    ("GS windows", "not stated",
     "30-s clips cut to files, a shorter last one skipped (benchmark/tasks/GS/preprocess.py), each normalised and "
     "encoded alone; windows ensembled per track (GS_prober.py)",
     "the same (waveform_norm=window, min_window_seconds=null); ensemble strategy chosen on valid"),
    ("VocalSet audio", "3-s segments (§3.2)",
     "leading silence trimmed (torchaudio vad), 132000-sample chunks at 44.1 kHz (2.993 s), each z-normalised, "
     "the remainder dropped, one file each (benchmark/tasks/VocalSet/preprocess.py); each chunk scored alone",
     "the same: trim_silence, 2.993-s windows encoded alone, waveform_norm=window, remainder dropped; each chunk "
     "an item scored alone"),
    ("VocalSet technique split", "10 techniques; test singers of Wilkins et al.; 9 train and 6 valid singers (§3.2)",
     "test f2 f8 m3 m5 m10; train/valid: GroupShuffleSplit(test_size=0.4) by file index among the other 15 "
     "singers, seed 42617 (VocalSet/preprocess.py) -> train_t/valid_t/test_t.txt",
     "MARBLE's lists (split=marble: drop train_t.txt, valid_t.txt, test_t.txt in the VocalSet root; refused "
     "without them); split=text: 9/6/5 singers"),
    ("VocalSet singer split", "12:8:5, all 20 singers in every split (§3.2)",
     "GroupShuffleSplit 0.2 then 0.4 by file index over all 17 techniques (VocalSet/preprocess.py) -> "
     "train_s/valid_s/test_s.txt (0.48:0.32:0.2 = 12:8:5)",
     "MARBLE's lists (split=marble: train_s.txt, valid_s.txt, test_s.txt; refused without them); split=text: "
     "12:8:5 within each singer"),
    ("beat targets", "{beat_text}",
     "beat frames 1; frames either side 1 in training only (GTZANBT_dataset.py AudioDataset)",
     "the same (beat_training=marble; beat_training: frames = neighbours in every split)"),
    ("beat training", "not stated",
     "random 10-s crops encoded alone (64 per batch), valid/test on 30 s; early stopping, LR schedule and "
     "checkpoint on valid beat F after madmom's DBN (GTZANBT_base_config.yaml, GTZANBT_prober.py)",
     "10-s crops encoded alone, each z-scored (beat_crop_encode=window), starts on a 5-s grid "
     "(beat_crop_hop_seconds; MARBLE: any start), labels shifted by the start; 64 per batch, a random crop of "
     "each of 64 files, epochs in files; valid/test whole 30-s files; early stopping, LR schedule and kept point "
     "on valid beat F after the DBN (beat_training=marble); beat_crop_encode=file: crops of the whole clip's "
     "frames, encoded once; beat_training: frames = the cheap mode: random frames, valid frame AP"),
    ("beat F", "mir_eval f_measure, 20 ms (§3.2)",
     "mir_eval match_events ±70 ms, counts pooled over files (GTZANBT_metric.py)",
     "±70 ms pooled; beat_tolerance: 0.02 on the task for the text's 20 ms"),
    ("batches of windows", "not stated",
     "64 files with all their windows per batch; an epoch is a pass over the files (train_collate_fn)",
     "64 windows per batch; an epoch is a pass over the windows"),
    ("seeds", "not stated", "one run, seed 1234 (*_base_config.yaml trainer.seed)",
     "1 (protocol.seeds=[0,1,2]: mean ± 95% CI)"),
    ("precision", "not stated", "16-bit mixed precision (trainer.precision 16)", "float32"),
]


def _marble_rows(**texts) -> list:
    return [tuple(cell.format(**texts) for cell in row) for row in _MARBLE_ROWS]


def _ma2023() -> Protocol:
    """Ma et al. 2023 (the 13-task paper, ``ma2023_music2vec_musichubert.txt``), as MARBLE's released code
    computed its numbers (the authors' benchmark: ``configs/music2vec/*.yaml``, ``configs/hubert/*.yaml``,
    ``exp_scripts/probe/probe_m2v.sh``). The table is in :data:`PROTOCOLS` ``ma2023``'s ``rows``
    (``music-ssl-probe --list-protocols``)."""
    grid = [ProbeConfig(hidden=512, dropout=0.2, batch_size=64, lr=1e-3, l2=0.0, standardize=False)]
    rules = _marble_rules({})  # configs/music2vec/EMO.yaml, configs/hubert/EMO.yaml: 30-s windows of the 45 s
    rows = [("layers", "the weighted sum (§4.1, Table 1)",
             "probe_m2v.sh probes layer all and each of 12..0", "the weighted sum (layers \"sum\"); "
             "protocol.layers=all+sum adds each state")]
    rows += _marble_rows(
        sum_text="the CNN output and the 12 Transformer outputs (13) (§4.1)",
        probe_text="MLP, one 512-d hidden layer (§4.1)",
        windows_text="MTG: 30-s window embeddings averaged; Emomusic: 45-s clips in 5-s windows, predictions "
                     "averaged (§3.2)",
        windows_code="every window encoded alone; a window is a training item, valid/test outputs averaged per "
                     "file; 30-s windows for every task, Emomusic too (configs/music2vec/EMO.yaml, "
                     "configs/hubert/EMO.yaml: 0-30 s and 30-45 s); MTG the same",
        windows_ours="the same (encode=window, min_window_seconds 1); the text: pooling: clip on an MTG task, "
                     "window_seconds: 5 (hop 5) on Emomusic",
        beat_text="adjacent frames labelled beat; madmom DBN (§3.2)")
    rows.insert(3, ("learning rate", "1e-3 (§4.1)",
                    "probe_m2v.sh sweeps 1e-3, 5e-3, 5e-4, 1e-2, 1e-4, 5e-5 (the paper reports 1e-3)",
                    "1e-3; the marble preset runs the sweep"))
    return Protocol("ma2023", grid, MARBLE_SETTINGS, layers="sum", seeds=[0], rules=rules,
                    source="Ma et al. 2023 §3.2, §4.1, computed as MARBLE's released code does "
                           f"(github.com/{MARBLE}); ma2023_music2vec_musichubert.txt",
                    head=MARBLE_HEAD, per_task=_marble_per_task(), rows=rows)


def _marble() -> Protocol:
    """MARBLE's released probe code (a43992899/MARBLE-Benchmark: ``benchmark/models/probers.py``, the task
    configs ``benchmark/tasks/*/*_base_config.yaml``, ``exp_scripts/probe/probe_m2v.sh``); the table is in
    its ``rows`` (``music-ssl-probe --list-protocols``)."""
    grid = [ProbeConfig(hidden=512, dropout=0.2, batch_size=64, lr=lr, l2=0.0, standardize=False) for lr in MARBLE_LRS]
    # EMO_base_config.yaml: crop_to_length_in_sec 30, sliding_window_size_in_sec 5
    rules = _marble_rules({"window_seconds": 5.0, "hop_seconds": 5.0, "first_seconds": 30.0})
    rows = [("layers", "-", "probe_m2v.sh: layer all and each of 12..0", "every state and the weighted sum"),
            ("learning rates", "-", "probe_m2v.sh: 1e-3, 5e-3, 5e-4, 1e-2, 1e-4, 5e-5 for every task and layer "
             "(hp_search in *_base_config.yaml lists 5 without 5e-5, enable: false)", "the same 6 rates")]
    rows += _marble_rows(
        sum_text="-", probe_text="-", windows_text="-",
        windows_code="every window encoded alone (30 s for every task, configs/<model>/*.yaml); EMO's base config "
                     "(EMO_base_config.yaml): the first 30 s in 5-s windows; windows are training items, valid/"
                     "test outputs averaged per file (scatter_mean)",
        windows_ours="the same (encode=window)", beat_text="-")
    return Protocol("marble", grid, MARBLE_SETTINGS, layers="all+sum", rules=rules,
                    source=f"MARBLE's released probe code (github.com/{MARBLE})", head=MARBLE_HEAD,
                    per_task=_marble_per_task(), rows=rows)


def _mulap() -> Protocol:
    """MuLaP (Manco et al. 2022, §3.2-3.3), as its released code trains the probes (ilaria-manco/mulap:
    ``mulap/trainers/downstream_trainer.py``, ``configs/downstream/*.yaml``); the table is in its ``rows``."""
    grid = [ProbeConfig(hidden=512, dropout=0.0, batch_size=64, lr=1e-3, l2=0.01, standardize=False)]
    settings = TrainSettings(eval_every_epochs=1, patience=50, max_epochs=200, lr_factor=0.5, lr_patience=10,
                             lr_threshold=1e-4)
    crops = {"pooling": "window", "window_seconds": 3.0, "hop_seconds": 3.0, "aggregate": "mean",
             "encode": "window", "min_window_seconds": None}
    rules = {kind: dict(crops) for kind in ("multiclass", "multilabel", "regression")}
    rules["mtt_top50"] = {"split": "mulap"}
    per_task = {"mtt_top50": {"train": {"max_epochs": 300}, "probe": {"l2": 1e-3}},  # mtt_tagging.yaml
                "nsynth_instrument": {"probe": {"l2": 1e-3}},  # nsynth_clf.yaml
                "emomusic": {"probe": {"hidden": 1024}},  # emomusic_reg.yaml (weight decay 0.01)
                **{f"mtg_{s}": {"probe": {"l2": 0.0, "batch_size": 32}}  # jamendo_tagging.yaml
                   for s in ("top50", "genre", "instrument", "moodtheme")}}
    rows = [
        ("representation", "the frozen audio backbone's output, transformer layers discarded (§3.2)",
         "LinearClassifier on CNNEncoder's output (mulap/evaluation/clf_evaluation.py)",
         "the encoder's last hidden state (layers \"last\")"),
        ("probe", "MLP, one 512-d hidden layer (§3.2)",
         "Linear -> ReLU -> Linear, hidden_dim 512; Emomusic 1024; dropout_p 0 (configs/downstream/*.yaml)",
         "MLP-512 (Emomusic 1024), no dropout"),
        ("optimiser", "Adam, batch 64, lr 1e-3, weight decay 0.01 (§3.2)",
         "Adam(weight_decay): MTT, NSynth, FMA 1e-3, Emomusic 0.01, Jamendo none with batch 32 "
         "(configs/downstream/*.yaml)", "the code's, per task (per_task)"),
        ("LR schedule", "reduced when the valid metric stops improving (§3.2)",
         "ReduceLROnPlateau(factor .5), torch's patience 10 and threshold 1e-4 (downstream_trainer.py)",
         "the same"),
        ("early stopping", "on the valid metric (§3.2)",
         "patience 50 epochs on the valid task metric (configs/downstream/*.yaml early_stop)", "the same"),
        ("epochs", "200 (§3.2)", "200; MTT 300 (mtt_tagging.yaml)", "the same"),
        ("MTT split", "jongpillee's MTAT split (footnote 2)",
         "train/valid/test.npy ('<id>\\t<mp3 path>') of the filtered MTAT (>= 1 of the top-50 tags, >= 29.1 s); "
         "f/tilopa-turkishauch-05-schlicht_1-88-117.mp3 left out of test (mulap/datasets/tagging.py)",
         "the same lists (split=mulap: drop train.npy, valid.npy, test.npy in the MTT root; refused without them); "
         "split=folders: 12:1:3 by folder"),
        ("crops", "random 3-s crops in training; test: non-overlapping 3-s clips, predictions averaged (§3.3)",
         "RandomCrop 3 s for train and valid (a new crop each epoch); test on the whole track in 3-s chunks, "
         "outputs averaged (mulap/datasets/tagging.py, clf_evaluation.py)",
         "3-s windows on a fixed grid, each encoded alone (encode=window), are the training items; valid/test "
         "outputs averaged per file"),
        ("track averaging", "predictions averaged across clips (§3.3)",
         "sigmoid outputs (tagging), log-softmax (classification) or outputs (regression) averaged over the 3-s "
         "chunks (clf_evaluation.py obtain_predictions)", "logits / outputs averaged (aggregate=mean)"),
        ("seeds", "3 random initialisations, mean (§3.2)", "one run per call (3 calls)", "3 (mean ± 95% CI)"),
    ]
    return Protocol("mulap", grid, settings, layers="last", seeds=[0, 1, 2], rules=rules,
                    source=f"Manco et al. 2022 (MuLaP) §3.2-3.3, computed as github.com/{MULAP} does; "
                           "mulap_manco2022.txt", per_task=per_task, rows=rows)


PROTOCOLS = {"ma2023": _ma2023, "mulap": _mulap, "marble": _marble, "jukemir": _jukemir}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ProbeConfigError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)} "
                               "(set `protocol.name` in the probe config).")
    return PROTOCOLS[name]()


TABLE_HEAD = ("setting", "paper text", "authors' code", "ours")
TABLE_WIDTHS = (15, 29, 37, 35)


def render_rows(rows: list, head: tuple = TABLE_HEAD, widths: tuple = TABLE_WIDTHS) -> str:
    """A plain-text table (reStructuredText 'simple table') of ``rows`` (tuples of 4 strings), cells wrapped."""
    rule = "  ".join("=" * w for w in widths)
    out = [rule, "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), rule]
    for row in rows:
        cells = [textwrap.wrap(str(cell), w, break_on_hyphens=False) or [""] for cell, w in zip(row, widths)]
        for i in range(max(len(c) for c in cells)):
            out.append("  ".join((c[i] if i < len(c) else "").ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(out + [rule])


def describe(protocol: Protocol) -> str:
    """Multi-line text: name, source, grid size, settings, head, layers, seeds, task rules, per-task overrides and
    the table (paper text · authors' code · ours)."""
    lines = [f"{protocol.name}: {protocol.source}",
             f"  grid: {len(protocol.grid)} probe config(s); layers: {protocol.layers}; seeds: {protocol.seeds}",
             f"  train: {asdict(protocol.settings)}", f"  head: {asdict(protocol.head)}"]
    lines += [f"  rules[{key}]: {value}" for key, value in protocol.rules.items()]
    lines += [f"  per_task[{key}]: {value}" for key, value in protocol.per_task.items()]
    if protocol.rows:
        table = render_rows(protocol.rows)
    else:
        table = "\n".join(line[4:] if line.startswith("    ") else line for line in protocol.table.splitlines())
    return "\n".join(lines) + "\n" + table.rstrip() + "\n"


def expand(grid: list, layers: list, seeds: list) -> list:
    """Cross a config grid with layer indices (``WEIGHTED_SUM`` allowed) and seeds -> list of ProbeConfig."""
    return [replace(c, layer=int(layer), seed=int(seed)) for layer in layers for c in grid for seed in seeds]


def resolve_layers(spec, num_states: int) -> list:
    """Layer spec -> hidden-state indices.

    ``"all"`` -> every state; ``"all+sum"`` -> every state and ``WEIGHTED_SUM``; ``"sum"`` -> the weighted sum
    only (the single state itself when there is one); ``"last"`` -> the last state; a list of ints (``-1`` =
    weighted sum; other negatives count from the end, Python style).
    """
    if isinstance(spec, str):
        base = list(range(num_states))
        table = {"all": base, "all+sum": base + ([WEIGHTED_SUM] if num_states > 1 else []),
                 "sum": [WEIGHTED_SUM] if num_states > 1 else [0], "last": [num_states - 1]}
        if spec not in table:
            raise ProbeConfigError(f"layers: {spec!r} is not one of {sorted(table)} or a list of indices.")
        return table[spec]
    out = []
    for value in spec:
        value = int(value)
        if value == WEIGHTED_SUM:
            out.append(value)
            continue
        index = value if value >= 0 else num_states + value
        if not 0 <= index < num_states:
            raise ProbeConfigError(f"layers: index {value} is out of range for {num_states} hidden states.")
        out.append(index)
    return out
