"""Train a grid of probes: all together as stacked tensors (:func:`train_batched`) or one after another
(:func:`train_sequential`, the textbook reference the batched run must equal).

Both follow the same schedule: validate at step 0 and every ``eval_every`` steps, keep each probe's best
validation point (strictly higher primary metric), stop a probe after ``patience`` validations without
improvement or once it has done its step budget (``max_epochs`` of its own batch size, rounded up to the next
validation), and — when ``lr_factor`` is set — multiply a probe's learning rate by ``lr_factor`` after more than
``lr_patience`` validations the scheduler does not count as better (torch's ``ReduceLROnPlateau(mode="max",
threshold=lr_threshold)``, which the sequential reference uses: its own best, a relative threshold, no cut once
the cut would change the rate by less than 1e-8). The run's ``HeadSettings`` (which states a weighted sum reads,
its initial logits, input dropout) apply to every probe; a step's batch is ``ProbeData.sample_train``'s (random
items, or MARBLE's beat crops). The batched run stacks probes sharing (hidden width, weighted sum or not, batch
size, standardisation) so no probe pays for another's larger batch; finished probes leave their stack, so late
steps only pay for probes still training.
"""
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .errors import ProbeConfigError
from .probes import SingleProbe, StackedAdam, StackedProbes
from .protocols import WEIGHTED_SUM, HeadSettings, TrainSettings

logger = logging.getLogger(__name__)
EVAL_SPLITS = ("valid", "test")
PLATEAU_EPS = 1e-8  # torch ReduceLROnPlateau's eps: a cut smaller than this is skipped
_CHUNK_ELEMENTS = 1 << 25  # gathered input elements per evaluation chunk (128 MiB of float32)


@dataclass
class TrainResult:
    """Per-probe outcome, in the order of ``configs``.

    Attributes:
        logits: split ("valid", "test") -> (P, N, K) float32 numpy logits of each probe's best parameters.
        best_valid: (P,) best validation primary metric (batched torch metric).
        best_step: (P,) step of that validation. steps: (P,) steps trained. seconds: wall time.
    """
    configs: list
    logits: dict
    best_valid: np.ndarray
    best_step: np.ndarray
    steps: np.ndarray
    seconds: float


def schedule(settings: TrainSettings, num_items: int, batch_sizes) -> tuple:
    """Resolve epochs (of ``num_items`` items, ``ProbeData.epoch_items``) to steps.

    Returns:
        (eval_every, max_steps): max_steps is a list aligned with ``batch_sizes``, each a multiple of
        eval_every, or None (unlimited).
    """
    if settings.patience is None and settings.max_epochs is None and settings.max_steps is None:
        raise ProbeConfigError("protocol.train: set at least one of patience, max_epochs, max_steps "
                               "(otherwise training never stops).")
    if (settings.lr_factor is None) != (settings.lr_patience is None) or (
            settings.lr_factor is not None and not 0 < settings.lr_factor < 1):
        raise ProbeConfigError(f"protocol.train: lr_factor ({settings.lr_factor}) and lr_patience "
                               f"({settings.lr_patience}) go together (reduce on plateau), lr_factor in (0, 1); "
                               "set both or neither.")
    eval_every = settings.eval_every
    if settings.eval_every_epochs:
        eval_every = max(1, round(settings.eval_every_epochs * num_items / min(min(batch_sizes), num_items)))
    limits = []
    for batch in batch_sizes:
        cap = math.inf
        if settings.max_epochs is not None:
            cap = math.ceil(settings.max_epochs * num_items / min(batch, num_items))
        if settings.max_steps is not None:
            cap = min(cap, settings.max_steps)
        limits.append(None if cap == math.inf else int(math.ceil(cap / eval_every) * eval_every))
    return eval_every, limits


def stack_key(config) -> tuple:
    """Probes with the same key train in one stack: (hidden, weighted sum, batch size, standardise)."""
    return config.hidden, config.layer == WEIGHTED_SUM, config.batch_size, config.standardize


class _Stack:
    """The live probes of one stack, their optimiser and their best parameters so far."""

    def __init__(self, rows: list, configs: list, data, max_steps: list, settings: TrainSettings,
                 head: HeadSettings = HeadSettings()):
        device = data.splits["train"].x.device
        pick = [configs[i] for i in rows]
        self.all_rows = np.asarray(rows)  # global probe indices of the whole stack
        self.rows = torch.tensor(rows, device=device)  # global indices of live probes
        self.origin = torch.arange(len(rows), device=device)  # live probes' positions in the whole stack
        self.model = StackedProbes.create(pick, data.num_states, data.dim, data.num_outputs, device, head,
                                          head.sum_from(data.layer_names))
        self.best, self.buffers = self.model.state()
        self.best = {name: p.clone() for name, p in self.best.items()}
        lr, l2 = (torch.tensor([getattr(c, a) for c in pick], dtype=torch.float32, device=device) for a in ("lr", "l2"))
        self.opt = StackedAdam(self.model.parameters(), lr, l2)
        self.batch = data.batch_size(pick[0].batch_size)
        self.x = {s: data.inputs(s, pick[0].standardize) for s in data.splits}
        self.max_steps = torch.tensor([2 ** 62 if max_steps[i] is None else max_steps[i] for i in rows],
                                      device=device)
        self.bad = torch.zeros(len(rows), dtype=torch.int64, device=device)
        self.plateau = torch.zeros(len(rows), dtype=torch.int64, device=device)  # bad validations since last LR cut
        self.plateau_best = torch.full((len(rows),), -math.inf, device=device)  # the scheduler's own best
        self.lr_factor, self.lr_patience = settings.lr_factor, settings.lr_patience
        self.lr_threshold = settings.lr_threshold

    def __len__(self) -> int:
        return self.rows.shape[0]

    def keep(self, keep: torch.Tensor) -> None:
        """Drop the probes where ``keep`` (bool (live,)) is False."""
        self.model = self.model.subset(keep)
        self.opt.subset(keep, self.model.parameters())
        for name in ("rows", "origin", "max_steps", "bad", "plateau", "plateau_best"):
            setattr(self, name, getattr(self, name)[keep])

    def train_step(self, data, step: int) -> None:
        train = data.splits["train"]
        index = data.sample_train(self.model.keys, step, self.batch)  # (P, B)
        logits = self.model(self.model.inputs(self.x["train"], index), step)  # (P, B, K)
        data.type.loss(logits, train.y[index]).mean(1).sum().backward()  # each probe: mean over its batch
        self.opt.step()

    def validate(self, data, step: int, records: tuple) -> None:
        """Score live probes on valid; record improvements and copy improved parameters to ``best``."""
        best_valid, best_step = records
        scores = data.type.batched_primary(stacked_logits(self.model, self.x["valid"]), data.splits["valid"])
        rows = self.rows
        improved = scores.float() > best_valid[rows]  # NaN never improves
        best_valid[rows] = torch.where(improved, scores.float(), best_valid[rows])
        best_step[rows] = torch.where(improved, torch.full_like(best_step[rows], step), best_step[rows])
        self.bad = torch.where(improved, torch.zeros_like(self.bad), self.bad + 1)
        if self.lr_factor is not None:
            self.step_plateau(scores.float())
        for name, param in self.model.named_parameters():
            self.best[name][self.origin[improved]] = param.detach()[improved]

    def step_plateau(self, scores: torch.Tensor) -> None:
        """torch's ``ReduceLROnPlateau.step(score)`` (mode max, relative threshold, cooldown 0) for every live
        probe: better = above its own best x (1 + threshold); after more than ``lr_patience`` validations that are
        not better the rate is multiplied by ``lr_factor`` (unless that changes it by <= 1e-8) and the count
        restarts."""
        better = scores > self.plateau_best * (1 + self.lr_threshold)  # NaN is never better
        self.plateau_best = torch.where(better, scores, self.plateau_best)
        self.plateau = torch.where(better, torch.zeros_like(self.plateau), self.plateau + 1)
        cut = self.plateau > self.lr_patience
        reduced = self.opt.lr * self.lr_factor
        self.opt.lr = torch.where(cut & (self.opt.lr - reduced > PLATEAU_EPS), reduced, self.opt.lr)
        self.plateau = torch.where(cut, torch.zeros_like(self.plateau), self.plateau)

    def best_model(self) -> StackedProbes:
        return StackedProbes({n: p.clone() for n, p in self.best.items()}, self.buffers, **self.model.options())


@torch.no_grad()
def stacked_logits(model: StackedProbes, x: torch.Tensor) -> torch.Tensor:
    """Logits of every probe of ``model`` on every item of x (S, N, C), in probe chunks: (P, N, K)."""
    per_probe = x.shape[1] * x.shape[2] * (x.shape[0] if model.weighted else 1)
    chunk = max(1, _CHUNK_ELEMENTS // max(per_probe, 1))
    if chunk >= model.num_probes:
        return model(model.inputs(x))
    outs = []
    for start in range(0, model.num_probes, chunk):
        sub = model.subset(torch.arange(start, min(start + chunk, model.num_probes), device=x.device))
        outs.append(sub(sub.inputs(x)))
    return torch.cat(outs)


def train_batched(configs: list, data, settings: TrainSettings, progress: bool = True,
                  head: HeadSettings = HeadSettings()) -> TrainResult:
    """Train every probe of ``configs`` together (one stack per ``stack_key``) on ``data`` (a ``ProbeData``)."""
    device = data.splits["train"].x.device
    begin = time.perf_counter()
    eval_every, max_steps = schedule(settings, data.epoch_items, [c.batch_size for c in configs])
    stacks = []
    for key in sorted({stack_key(c) for c in configs}):
        stacks.append(_Stack([i for i, c in enumerate(configs) if stack_key(c) == key], configs, data, max_steps,
                             settings, head))
    everyone, P = list(stacks), len(configs)
    best_valid = torch.full((P,), -math.inf, device=device)
    best_step, steps = (torch.zeros(P, dtype=torch.int64, device=device) for _ in range(2))
    step = 0
    with tqdm(desc=f"{P} probes", unit="step", disable=None if progress else True) as bar:
        while True:
            if step % eval_every == 0:
                stacks = _validate_and_stop(stacks, data, step, (best_valid, best_step), steps, settings.patience)
                bar.set_postfix(active=sum(len(s) for s in stacks))
                if not stacks:
                    break
            for stack in stacks:
                stack.train_step(data, step)
            step += 1
            bar.update(1)
    logits = {split: np.zeros((P, data.splits[split].num_items, data.num_outputs), np.float32)
              for split in EVAL_SPLITS}
    for stack in everyone:
        model = stack.best_model()
        for split in EVAL_SPLITS:
            logits[split][stack.all_rows] = stacked_logits(model, stack.x[split]).float().cpu().numpy()
    return TrainResult(configs, logits, best_valid.cpu().numpy(), best_step.cpu().numpy(), steps.cpu().numpy(),
                       time.perf_counter() - begin)


def _validate_and_stop(stacks: list, data, step: int, records: tuple, steps, patience) -> list:
    """Validate every live probe, stop the finished ones; returns the stacks with probes left."""
    alive = []
    for stack in stacks:
        stack.validate(data, step, records)
        stop = stack.max_steps <= step
        if patience is not None:
            stop |= stack.bad >= patience
        steps[stack.rows[stop]] = step
        if bool(stop.all()):
            continue
        if bool(stop.any()):
            stack.keep(~stop)
        alive.append(stack)
    return alive


# ---------------------------------------------------------------- sequential reference

def train_sequential(configs: list, data, settings: TrainSettings, progress: bool = True,
                     head: HeadSettings = HeadSettings()) -> TrainResult:
    """Train each probe on its own with ``nn.Linear`` modules and ``torch.optim.Adam`` (the reference loop)."""
    begin = time.perf_counter()
    eval_every, max_steps = schedule(settings, data.epoch_items, [c.batch_size for c in configs])
    P = len(configs)
    logits = {split: np.zeros((P, data.splits[split].num_items, data.num_outputs), np.float32)
              for split in EVAL_SPLITS}
    best_valid, best_step, steps = np.full(P, -np.inf), np.zeros(P, np.int64), np.zeros(P, np.int64)
    for p, config in enumerate(tqdm(configs, desc="sequential probes", disable=None if progress else True)):
        best_valid[p], best_step[p], steps[p], per_split = _train_one(config, data, settings, eval_every,
                                                                      max_steps[p], head)
        for split in EVAL_SPLITS:
            logits[split][p] = per_split[split]
    return TrainResult(configs, logits, best_valid, best_step, steps, time.perf_counter() - begin)


def _rows(config, x: torch.Tensor, index: torch.Tensor, sum_from: int = 0) -> torch.Tensor:
    """Rows ``index`` of one probe's input: (B, C), or (S', B, C) for a weighted-sum probe (states sum_from..)."""
    return x[sum_from:, index] if config.layer == WEIGHTED_SUM else x[config.layer, index]


def _train_one(config, data, settings: TrainSettings, eval_every: int, max_steps,
               head: HeadSettings = HeadSettings()) -> tuple:
    """Train one probe; returns (best valid metric, its step, steps trained, split -> (N, K) numpy logits)."""
    train, valid = data.splits["train"], data.splits["valid"]
    x = {s: data.inputs(s, config.standardize) for s in data.splits}
    sum_from = head.sum_from(data.layer_names)
    model = SingleProbe(config, data.num_states, data.dim, data.num_outputs, train.x.device, head, sum_from)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.l2)
    plateau = None if settings.lr_factor is None else torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=settings.lr_factor, patience=settings.lr_patience,
        threshold=settings.lr_threshold, eps=PLATEAU_EPS)
    patience = settings.patience
    batch = data.batch_size(config.batch_size)

    @torch.no_grad()
    def split_logits(split: str) -> torch.Tensor:
        return model(_rows(config, x[split], torch.arange(x[split].shape[1], device=train.x.device), sum_from))

    best, best_step, bad, step = -math.inf, 0, 0, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # kept if no score is a number
    while True:
        if step % eval_every == 0:
            score = float(data.type.batched_primary(split_logits("valid").unsqueeze(0), valid)[0])
            if score > best:
                best, best_step, bad = score, step, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            if plateau is not None:
                plateau.step(score)
            if (max_steps is not None and step >= max_steps) or (patience is not None and bad >= patience):
                break
        index = data.sample_train(model.key, step, batch)[0]
        logits = model(_rows(config, x["train"], index, sum_from), step).unsqueeze(0)  # (1, B, K)
        loss = data.type.loss(logits, train.y[index].unsqueeze(0)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    model.load_state_dict(best_state)
    return best, best_step, step, {s: split_logits(s).float().cpu().numpy() for s in EVAL_SPLITS}
