"""Probe configs and the protocol presets of the literature (``jukemir``, ``marble``, ``mulap``).

A protocol is a grid of :class:`ProbeConfig` (one probe each) plus shared :class:`TrainSettings`. The grid is
crossed with the layers to probe (every hidden state and/or the softmax-weighted sum of all of them, layer -1)
and with the seeds.

=========  ==================================================================================================
preset     grid
=========  ==================================================================================================
jukemir    JukeMIR's 216 configs: standardisation {off, on} x {linear, MLP-512} x batch {64, 256} x
           lr {1e-5, 1e-4, 1e-3} x dropout {.25, .5, .75} x L2 {0, 1e-4, 1e-3}; Adam; validation every 8 steps,
           stop after 256 evaluations without improvement (as JukeMIR), capped at ``max_epochs`` (500; JukeMIR
           had no cap); the representation's own layer(s)
marble     MARBLE's probe: MLP-512, dropout .2, batch 64, Adam, L2 0, lr {1e-2, 5e-3, 1e-3, 5e-4, 1e-4},
           100 epochs, validation each epoch, stop after 20 epochs without improvement; every layer and the
           weighted sum. (MARBLE's ReduceLROnPlateau schedule is not applied.)
mulap      MLP-512, dropout .2, batch 64, Adam lr 1e-3, 200 epochs, best validation epoch kept (no early stop),
           3 seeds; every layer and the weighted sum
=========  ==================================================================================================
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
        layer: hidden-state index (0 = CNN features, i = Transformer layer i) or ``WEIGHTED_SUM`` (-1).
        hidden: 0 = linear probe, else one ReLU hidden layer of this width (MLP).
        standardize: z-score each feature with train-split statistics.
        batch_size: items per step (sampled without replacement within a step, as JukeMIR).
        lr: Adam learning rate. dropout: dropout rate on the input (and the hidden layer). l2: Adam weight decay.
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

    def as_dict(self) -> dict:
        return asdict(self)

    def without_seed(self) -> tuple:
        return tuple(v for k, v in asdict(self).items() if k != "seed")


@dataclass
class TrainSettings:
    """How long to train and how to early-stop (shared by every probe of a run).

    Attributes:
        eval_every: validate every this many steps (``eval_every_epochs`` overrides it when set).
        eval_every_epochs: validate every this many epochs of the *smallest* batch size in the grid.
        patience: stop after this many validations without improvement (None = never stop early; the best
            validation point is still kept).
        max_epochs: stop after this many passes over the train split (per probe, by its batch size).
        max_steps: hard cap on steps (None = none).
    """
    eval_every: int = 8
    eval_every_epochs: Optional[float] = None
    patience: Optional[int] = 256
    max_epochs: Optional[float] = 500
    max_steps: Optional[int] = None


@dataclass
class Protocol:
    name: str
    grid: list  # ProbeConfig with layer/seed placeholders
    settings: TrainSettings
    layers: str = "all"  # "all" = every hidden state; "all+sum" = every hidden state and the weighted sum
    seeds: list = field(default_factory=lambda: [0])


def _jukemir() -> Protocol:
    grid = [ProbeConfig(standardize=s, hidden=h, batch_size=b, lr=lr, dropout=d, l2=l2)
            for s, h, b, lr, d, l2 in itertools.product((False, True), (0, 512), (64, 256), (1e-5, 1e-4, 1e-3),
                                                        (0.25, 0.5, 0.75), (0.0, 1e-4, 1e-3))]
    return Protocol("jukemir", grid, TrainSettings(eval_every=8, patience=256, max_epochs=500), layers="all")


def _marble() -> Protocol:
    grid = [ProbeConfig(hidden=512, dropout=0.2, batch_size=64, lr=lr, l2=0.0, standardize=False)
            for lr in (1e-2, 5e-3, 1e-3, 5e-4, 1e-4)]
    settings = TrainSettings(eval_every_epochs=1, patience=20, max_epochs=100)
    return Protocol("marble", grid, settings, layers="all+sum")


def _mulap() -> Protocol:
    grid = [ProbeConfig(hidden=512, dropout=0.2, batch_size=64, lr=1e-3, l2=0.0, standardize=False)]
    settings = TrainSettings(eval_every_epochs=1, patience=None, max_epochs=200)
    return Protocol("mulap", grid, settings, layers="all+sum", seeds=[0, 1, 2])


PROTOCOLS = {"jukemir": _jukemir, "marble": _marble, "mulap": _mulap}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ProbeConfigError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)} "
                               "(set `protocol.name` in the probe config).")
    return PROTOCOLS[name]()


def expand(grid: list, layers: list, seeds: list) -> list:
    """Cross a config grid with layer indices (``WEIGHTED_SUM`` allowed) and seeds -> list of ProbeConfig."""
    return [replace(c, layer=int(layer), seed=int(seed)) for layer in layers for c in grid for seed in seeds]


def resolve_layers(spec, num_states: int) -> list:
    """Layer spec -> hidden-state indices.

    ``"all"`` -> every state; ``"all+sum"`` -> every state and ``WEIGHTED_SUM``; ``"sum"`` -> the weighted sum
    only; a list of ints (``-1`` = weighted sum; other negatives count from the end, Python style).
    """
    if isinstance(spec, str):
        base = list(range(num_states))
        table = {"all": base, "all+sum": base + ([WEIGHTED_SUM] if num_states > 1 else []),
                 "sum": [WEIGHTED_SUM], "last": [num_states - 1]}
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
