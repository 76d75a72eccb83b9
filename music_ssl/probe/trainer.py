"""Train a grid of probes: all together as stacked tensors (:func:`train_batched`) or one after another
(:func:`train_sequential`, the reference the batched run must equal).

Both follow the same schedule: validate at step 0 and every ``eval_every`` steps, keep each probe's best
validation point (strictly higher primary metric), stop a probe after ``patience`` validations without
improvement or once it has done its step budget (``max_epochs`` of its own batch size, rounded up to the next
validation). Finished probes leave the stacked tensors, so late steps only pay for probes still training.
"""
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from . import randomness as rnd
from .errors import ProbeConfigError
from .probes import SingleProbe, StackedAdam, StackedProbes
from .protocols import WEIGHTED_SUM, TrainSettings

logger = logging.getLogger(__name__)
EVAL_SPLITS = ("valid", "test")
_CHUNK_ELEMENTS = 1 << 25  # per-chunk gathered input elements at evaluation (128 MiB of float32)


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
    """Resolve epochs to steps.

    Returns:
        (eval_every, max_steps) where max_steps is a list aligned with ``batch_sizes``, each a multiple of
        eval_every (or None = unlimited).
    """
    if settings.patience is None and settings.max_epochs is None and settings.max_steps is None:
        raise ProbeConfigError("train settings: set at least one of patience, max_epochs, max_steps "
                               "(otherwise training never stops).")
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


def _probe_keys(configs, device) -> torch.Tensor:
    return torch.tensor([rnd.probe_key(c.as_dict()) for c in configs], dtype=torch.int64, device=device)


class _Group:
    """The probes of one architecture (hidden width, weighted-sum or not) being trained together."""

    def __init__(self, rows, configs, data, max_steps, device):
        self.all_rows = np.asarray(rows)  # global probe indices of the whole group
        self.rows = torch.tensor(rows, device=device)  # global probe indices of live probes
        self.origin = torch.arange(len(rows), device=device)  # positions in the full group
        pick = [configs[i] for i in rows]
        f = lambda attr, dtype: torch.tensor([getattr(c, attr) for c in pick], dtype=dtype, device=device)  # noqa: E731
        args = (_probe_keys(pick, device), f("layer", torch.int64), data.num_states, data.dim, pick[0].hidden,
                data.num_outputs, f("dropout", torch.float32), f("standardize", torch.bool))
        self.model = StackedProbes(*args)
        self.final = StackedProbes(*args)  # receives the best parameters at the end
        self.best = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        self.opt = StackedAdam(self.model.parameters(), f("lr", torch.float32), f("l2", torch.float32))
        self.batch = f("batch_size", torch.int64).clamp(max=data.splits["train"].num_items)
        self.max_steps = torch.tensor([m if m is not None else 2 ** 62 for m in (max_steps[i] for i in rows)],
                                      device=device)
        self.bad = torch.zeros(len(rows), dtype=torch.int64, device=device)

    def __len__(self):
        return self.rows.shape[0]

    def keep(self, keep: torch.Tensor) -> None:
        self.model.subset(keep)
        self.opt.subset(keep, self.model.parameters())
        for name in ("rows", "origin", "batch", "max_steps", "bad"):
            setattr(self, name, getattr(self, name)[keep])


def _train_step(group: _Group, data, step: int, mean, inv_std) -> None:
    train = data.splits["train"]
    bmax = int(group.batch.max())
    index = rnd.sample_batches(rnd.stream_keys(group.model.keys, step, rnd.BATCH), train.num_items, bmax)
    weight = (torch.arange(index.shape[1], device=index.device) < group.batch.unsqueeze(1)).float()
    weight = weight / group.batch.unsqueeze(1)  # (P, B): mean over each probe's own batch
    logits = group.model(group.model.inputs(train.x, index, mean, inv_std), step)  # (P, B, K)
    loss = (data.type.loss(logits, train.y[index]) * weight).sum()
    loss.backward()
    group.opt.step()


@torch.no_grad()
def stacked_logits(model: StackedProbes, split, mean, inv_std) -> torch.Tensor:
    """Evaluation logits of every probe of ``model`` on a whole split, in probe chunks: (P, N, K)."""
    n = split.num_items
    per_probe = n * split.x.shape[2] * (split.x.shape[0] if model.weighted else 1)
    chunk = max(1, _CHUNK_ELEMENTS // max(per_probe, 1))
    index_all = torch.arange(n, device=split.x.device)
    outs = []
    for start in range(0, model.num_probes, chunk):
        sub = _slice_model(model, start, start + chunk)
        index = index_all.unsqueeze(0).expand(sub.num_probes, n)
        outs.append(sub(sub.inputs(split.x, index, mean, inv_std)))
    return torch.cat(outs)


def _slice_model(model: StackedProbes, start: int, stop: int) -> StackedProbes:
    if start == 0 and stop >= model.num_probes:
        return model
    view = StackedProbes.__new__(StackedProbes)
    torch.nn.Module.__init__(view)
    view.hidden, view.weighted = model.hidden, model.weighted
    for name, param in model.named_parameters():
        setattr(view, name, torch.nn.Parameter(param.data[start:stop], requires_grad=False))
    for name, buf in model.named_buffers():
        view.register_buffer(name, buf[start:stop])
    return view


def _validate(group, data, step, mean, inv_std, best_valid, best_step) -> None:
    scores = data.type.batched_primary(stacked_logits(group.model, data.splits["valid"], mean, inv_std),
                                       data.splits["valid"]).float()
    rows = group.rows
    improved = scores > best_valid[rows]  # NaN never improves
    best_valid[rows] = torch.where(improved, scores, best_valid[rows])
    best_step[rows] = torch.where(improved, torch.full_like(best_step[rows], step), best_step[rows])
    group.bad = torch.where(improved, torch.zeros_like(group.bad), group.bad + 1)
    with torch.no_grad():
        for name, param in group.model.named_parameters():
            target = group.best[name]
            target[group.origin[improved]] = param.data[improved]


def train_batched(configs: list, data, settings: TrainSettings, progress: bool = True) -> TrainResult:
    """Train every probe of ``configs`` together (stacked by architecture) on ``data`` (a ``ProbeData``)."""
    device = data.splits["train"].x.device
    begin = time.perf_counter()
    eval_every, max_steps = schedule(settings, data.splits["train"].num_items, [c.batch_size for c in configs])
    mean, inv_std = data.standardization()
    groups = []
    for arch in sorted({(c.hidden, c.layer == WEIGHTED_SUM) for c in configs}):
        rows = [i for i, c in enumerate(configs) if (c.hidden, c.layer == WEIGHTED_SUM) == arch]
        groups.append(_Group(rows, configs, data, max_steps, device))
    everyone = list(groups)
    P = len(configs)
    best_valid = torch.full((P,), -math.inf, device=device)
    best_step = torch.zeros(P, dtype=torch.int64, device=device)
    steps = torch.zeros(P, dtype=torch.int64, device=device)
    step = 0
    bar = tqdm(desc=f"{P} probes", unit="step", disable=None if progress else True)
    while True:
        if step % eval_every == 0:
            groups = _validate_and_stop(groups, data, step, mean, inv_std, (best_valid, best_step, steps),
                                        settings.patience)
            bar.set_postfix(active=sum(len(g) for g in groups))
            if not groups:
                break
        for group in groups:
            _train_step(group, data, step, mean, inv_std)
        step += 1
        bar.update(1)
    bar.close()
    logits = {split: np.zeros((P, data.splits[split].num_items, data.num_outputs), np.float32)
              for split in EVAL_SPLITS}
    for group in everyone:
        with torch.no_grad():
            for name, param in group.final.named_parameters():
                param.copy_(group.best[name])
        for split in EVAL_SPLITS:
            out = stacked_logits(group.final, data.splits[split], mean, inv_std)
            logits[split][group.all_rows] = out.float().cpu().numpy()
    return TrainResult(configs, logits, best_valid.cpu().numpy(), best_step.cpu().numpy(), steps.cpu().numpy(),
                       time.perf_counter() - begin)


def _validate_and_stop(groups, data, step, mean, inv_std, records, patience) -> list:
    """Validate every live probe, stop the finished ones; returns the groups with probes left."""
    best_valid, best_step, steps = records
    alive = []
    for group in groups:
        _validate(group, data, step, mean, inv_std, best_valid, best_step)
        stop = group.max_steps <= step
        if patience is not None:
            stop |= group.bad >= patience
        steps[group.rows[stop]] = step
        if bool(stop.all()):
            continue
        if bool(stop.any()):
            group.keep(~stop)
        alive.append(group)
    return alive


# ---------------------------------------------------------------- sequential reference

def train_sequential(configs: list, data, settings: TrainSettings, progress: bool = True) -> TrainResult:
    """Train each probe on its own with ``nn.Linear`` modules and ``torch.optim.Adam`` (the reference loop)."""
    device = data.splits["train"].x.device
    begin = time.perf_counter()
    eval_every, max_steps = schedule(settings, data.splits["train"].num_items, [c.batch_size for c in configs])
    mean, inv_std = data.standardization()
    P = len(configs)
    logits = {split: np.zeros((P, data.splits[split].num_items, data.num_outputs), np.float32)
              for split in EVAL_SPLITS}
    best_valid, best_step, steps = np.full(P, -np.inf), np.zeros(P, np.int64), np.zeros(P, np.int64)
    for p, config in enumerate(tqdm(configs, desc="sequential probes", disable=None if progress else True)):
        outcome = _train_one(config, data, settings.patience, eval_every, max_steps[p], mean, inv_std)
        best_valid[p], best_step[p], steps[p], per_split = outcome
        for split in EVAL_SPLITS:
            logits[split][p] = per_split[split]
    return TrainResult(configs, logits, best_valid, best_step, steps, time.perf_counter() - begin)


def _single_inputs(config, x, index, mean, inv_std) -> torch.Tensor:
    """Rows ``index`` of one probe's input: (B, C), or (S, B, C) for a weighted-sum probe; standardised if asked."""
    if config.layer == WEIGHTED_SUM:
        rows = x[:, index]
        return (rows - mean[:, None]) * inv_std[:, None] if config.standardize else rows
    rows = x[config.layer, index]
    return (rows - mean[config.layer]) * inv_std[config.layer] if config.standardize else rows


def _train_one(config, data, patience, eval_every, max_steps, mean, inv_std) -> tuple:
    train, valid = data.splits["train"], data.splits["valid"]
    model = SingleProbe(rnd.probe_key(config.as_dict()), config.layer, data.num_states, data.dim, config.hidden,
                        data.num_outputs, config.dropout, train.x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.l2)
    batch = min(config.batch_size, train.num_items)

    def split_logits(split):
        with torch.no_grad():
            return model(_single_inputs(config, split.x, torch.arange(split.num_items, device=split.x.device), mean, inv_std))

    best, best_step, bad, best_state, step = -math.inf, 0, 0, None, 0
    while True:
        if step % eval_every == 0:
            score = float(data.type.batched_primary(split_logits(valid).unsqueeze(0), valid)[0])
            if score > best:
                best, best_step, bad = score, step, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            if (max_steps is not None and step >= max_steps) or (patience is not None and bad >= patience):
                break
        index = rnd.sample_batches(rnd.stream_keys(model.key, step, rnd.BATCH), train.num_items, batch)[0]
        loss = data.type.loss(model(_single_inputs(config, train.x, index, mean, inv_std), step).unsqueeze(0),
                              train.y[index].unsqueeze(0)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    if best_state is not None:
        model.load_state_dict(best_state)
    per_split = {s: split_logits(data.splits[s]).float().cpu().numpy() for s in EVAL_SPLITS}
    return best, best_step, step, per_split
