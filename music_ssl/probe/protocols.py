"""Probe configs and the protocol presets of the literature (``ma2023``, ``mulap``, ``marble``, ``jukemir``).

A protocol is a grid of :class:`ProbeConfig` (one probe each), shared :class:`TrainSettings`, the layer options
to probe and the seeds, plus :class:`TaskRules`: per task type (or task name) the pooling / song aggregation /
beat scoring the paper used. The grid is crossed with the layers (each hidden state and/or the softmax-weighted
sum of all of them, layer -1) and with the seeds. Every preset's docstring has a table: setting · the paper's
value · where the paper says so · ours. ``music-ssl-probe --list-protocols`` prints them.

Hidden states (``music_ssl.models.hidden_states``): state 0 is the Transformer input (the CNN output after the
feature layer norm, the projection to C, the positional convolution and, for post-LN models, the encoder layer
norm: Hugging Face's ``hidden_states[0]``); state i is the output of Transformer layer i. The raw 512-d CNN
output is a separate feature (``source.cnn: true``), since its width differs.
"""
import itertools
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

from .errors import ProbeConfigError

WEIGHTED_SUM = -1  # ProbeConfig.layer value: softmax-weighted sum of every hidden state


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
            (``torch.optim.lr_scheduler.ReduceLROnPlateau(mode="max", threshold=0)``); None = constant rate.
    """
    eval_every: int = 8
    eval_every_epochs: Optional[float] = None
    patience: Optional[int] = 256
    max_epochs: Optional[float] = 500
    max_steps: Optional[int] = None
    lr_factor: Optional[float] = None
    lr_patience: Optional[int] = None


@dataclass
class Protocol:
    """A preset: grid, train settings, layer option, seeds and task rules.

    ``rules`` maps a task name (``emomusic``) or a task type (``multiclass``) to settings among ``RULE_KEYS``;
    a name wins over a type, and a task entry in the probe config wins over both.
    """
    name: str
    grid: list  # ProbeConfig with layer/seed placeholders
    settings: TrainSettings
    layers: str = "all"  # "all" | "all+sum" | "sum" | "last" (see resolve_layers)
    seeds: list = field(default_factory=lambda: [0])
    rules: dict = field(default_factory=dict)
    source: str = ""  # one line: where the protocol comes from
    table: str = ""  # the docstring table (setting · paper · where · ours)

    def rules_for(self, task_name: str, task_type: str) -> dict:
        return {**self.rules.get(task_type, {}), **self.rules.get(task_name, {})}

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
    grid                     216 configs: standardisation x     §5.2        the same 216 (JukeMIR's released
                             {linear, MLP-512} x batch {64,256}             reproduce/4_grid_config.py also has
                             x lr {1e-5,1e-4,1e-3} x dropout                a two-layer MLP [512, 256]: 324
                             {.25,.5,.75} x L2 {0,1e-4,1e-3}                configs; we keep the paper's 216)
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


def _ma2023() -> Protocol:
    """Ma et al. 2023 (the 13-task paper, ``ma2023_music2vec_musichubert.txt``).

    =====================  ==================================  ==========  =====================================
    setting                paper                               where       ours
    =====================  ==================================  ==========  =====================================
    features               frozen; learned weighted sum of     §4.1        softmax-weighted sum of the L + 1
                           the CNN output and the 12                       hidden states, layers "sum"; state 0
                           Transformer outputs                             is the Transformer input (HF's
                                                                           hidden_states[0], the first of the 13
                                                                           states an HF-based extractor such as
                                                                           MARBLE's gives); the raw 512-d CNN
                                                                           output (source.cnn) cannot join a
                                                                           768-d sum
    probe                  MLP, one 512-d hidden layer         §4.1        MLP-512, ReLU
    learning rate          1e-3                                §4.1        1e-3
    optimiser, batch,      not stated                          —           MARBLE's released probe code (the
    dropout, epochs,                                                       authors' benchmark): Adam, batch 64,
    schedule, stopping                                                     dropout .2, L2 0, <= 100 epochs,
                                                                           validate each epoch, LR x0.5 after 5
                                                                           bad epochs, stop after 20
    MTT / MTG              top-50 tags; MTG: mean of 30-s      §3.2        clip mean; MTG: mean of 30-s window
                           window embeddings                               means
    Emomusic               45-s clips in 5-s windows,          §3.2        5-s windows are the items; test/valid
                           predictions averaged per song                   outputs averaged per song (mean)
    VocalSet               3-s segments; technique: 10         §3.2        3-s windows scored per window;
                           techniques, 9/6/5 singers; singer:              technique 9/6/5 singers; singer
                           12:8:5 within the 20 singers                    12:8:5 within each singer
    beat                   adjacent frames labelled beat,      §3.2        neighbour frames target 1, madmom
                           madmom DBN, mir_eval F, 20 ms                   DBN, mir_eval F with ±70 ms pooled
                                                                           over files (the authors' released
                                                                           MARBLE code; the text says 20 ms:
                                                                           set beat_tolerance: 0.02 on the
                                                                           task); configs chosen on valid F
    seeds                  not stated                          —           3 (mean ± 95% CI)
    =====================  ==================================  ==========  =====================================
    """
    grid = [ProbeConfig(hidden=512, dropout=0.2, batch_size=64, lr=1e-3, l2=0.0, standardize=False)]
    settings = TrainSettings(eval_every_epochs=1, patience=20, max_epochs=100, lr_factor=0.5, lr_patience=5)
    rules = {"emomusic": {"pooling": "window", "window_seconds": 5.0, "hop_seconds": 5.0, "aggregate": "mean"},
             "beat": {"beat_neighbour_weight": 1.0, "beat_tolerance": 0.07, "beat_average": "pooled"}}
    return Protocol("ma2023", grid, settings, layers="sum", seeds=[0, 1, 2], rules=rules,
                    source="Ma et al. 2023 §3.2, §4.1 (+ MARBLE's released probe code for what it leaves open); "
                           "ma2023_music2vec_musichubert.txt", table=_ma2023.__doc__)


def _marble() -> Protocol:
    """MARBLE's released probe code (a43992899/MARBLE-Benchmark: benchmark/models/probers.py, task configs).

    =====================  ==================================  ===================  ============================
    setting                MARBLE code                         where                ours
    =====================  ==================================  ===================  ============================
    probe                  MLP [512], dropout .2               tasks/*_config.yaml  MLP-512, dropout .2
    optimiser              Adam, lr grid {1e-2, 5e-3, 1e-3,    *_config.yaml        Adam, the same 5 rates
                           5e-4, 1e-4}, L2 0, batch 64         (hp_search)
    LR schedule            ReduceLROnPlateau(max, factor .5,   probers.py           the same (per validation)
                           patience 5) on the valid metric
    early stopping         patience 20 epochs, <= 100 epochs   *_config.yaml        the same, validate each epoch
    layers                 each layer or the weighted sum      feature_selector     every state + weighted sum
    window -> song         clip outputs averaged per file      ProberForBert-       the same for Emomusic (5-s
                           (scatter_mean) at valid/test;       UtterCLS,            windows over the whole 45 s:
                           EMO: 5-s windows of the first 30 s  EMO_base_config      the 30-s crop is not applied)
    beat F                 mir_eval match_events, ±70 ms,      GTZANBT_metric.py    the same (pooled)
                           counts pooled over files
    =====================  ==================================  ===================  ============================
    """
    grid = [ProbeConfig(hidden=512, dropout=0.2, batch_size=64, lr=lr, l2=0.0, standardize=False)
            for lr in (1e-2, 5e-3, 1e-3, 5e-4, 1e-4)]
    settings = TrainSettings(eval_every_epochs=1, patience=20, max_epochs=100, lr_factor=0.5, lr_patience=5)
    rules = {"emomusic": {"pooling": "window", "window_seconds": 5.0, "hop_seconds": 5.0, "aggregate": "mean"},
             "beat": {"beat_tolerance": 0.07, "beat_average": "pooled"}}
    return Protocol("marble", grid, settings, layers="all+sum", rules=rules,
                    source="MARBLE's released probe code (github.com/a43992899/MARBLE-Benchmark)",
                    table=_marble.__doc__)


def _mulap() -> Protocol:
    """MuLaP (Manco et al. 2022, §3.2-3.3).

    =====================  ==================================  ==========  =====================================
    setting                paper                               where       ours
    =====================  ==================================  ==========  =====================================
    representation         the frozen audio backbone's output  §3.2        the encoder's output (last hidden
                           (cross-modal layers discarded)                  state), layers "last"
    probe                  MLP, one 512-d hidden layer         §3.2        MLP-512, no dropout (none stated)
    optimiser              Adam, batch 64, lr 1e-3, weight     §3.2        Adam(weight_decay=0.01), batch 64,
                           decay 0.01                                      lr 1e-3
    LR schedule            reduced when the valid metric       §3.2        ReduceLROnPlateau with torch's
                           stops improving (factor, patience               defaults: x0.1 after 10 bad epochs
                           not stated)
    early stopping         on the valid metric (patience not   §3.2        20 epochs; validate each epoch
                           stated); 200 epochs                             <= 200 epochs
    crops                  random 3-s crops in training;       §3.3        3-s windows are the training items
                           test: non-overlapping 3-s clips,                (crops on the 3-s grid of the frozen
                           predictions averaged per track                  features); valid/test outputs
                                                                           averaged per file (mean)
    seeds                  3 random initialisations, mean      §3.2        3 (mean ± 95% CI)
    =====================  ==================================  ==========  =====================================

    Left open by the paper, our reading: whether "weight decay" is Adam's L2 or AdamW's (we use Adam's, the
    usual meaning with Adam); the plateau factor/patience and early-stopping patience (torch defaults, 20);
    whether probabilities or logits are averaged (we average outputs, as MARBLE's code does).
    """
    grid = [ProbeConfig(hidden=512, dropout=0.0, batch_size=64, lr=1e-3, l2=0.01, standardize=False)]
    settings = TrainSettings(eval_every_epochs=1, patience=20, max_epochs=200, lr_factor=0.1, lr_patience=10)
    crops = {"pooling": "window", "window_seconds": 3.0, "hop_seconds": 3.0, "aggregate": "mean"}
    rules = {kind: dict(crops) for kind in ("multiclass", "multilabel", "regression")}
    return Protocol("mulap", grid, settings, layers="last", seeds=[0, 1, 2], rules=rules,
                    source="Manco et al. 2022 (MuLaP) §3.2-3.3; mulap_manco2022.txt", table=_mulap.__doc__)


PROTOCOLS = {"ma2023": _ma2023, "mulap": _mulap, "marble": _marble, "jukemir": _jukemir}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ProbeConfigError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)} "
                               "(set `protocol.name` in the probe config).")
    return PROTOCOLS[name]()


def describe(protocol: Protocol) -> str:
    """Multi-line text: name, source, grid size, settings, layers, seeds, task rules and the docstring table."""
    lines = [f"{protocol.name}: {protocol.source}",
             f"  grid: {len(protocol.grid)} probe config(s); layers: {protocol.layers}; seeds: {protocol.seeds}",
             f"  train: {asdict(protocol.settings)}"]
    lines += [f"  rules[{key}]: {value}" for key, value in protocol.rules.items()]
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
