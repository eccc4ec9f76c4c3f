"""The generic fit loop: any ``nn.Module`` with ``forward(batch) -> logits``.

- class-weighted cross-entropy from the training label counts (MELD is ~47%
  neutral; unweighted, a model learns to say "neutral");
- AdamW; per-step schedule ``constant``, ``cosine`` or ``linear_warmup``; a
  model may expose ``param_groups(lr)`` to give parts their own learning rate;
- model selection on dev weighted F1 (or a caller's ``dev_score``), early
  stopping after ``patience`` epochs without improvement;
- deterministic on CPU for one seed: every RNG is seeded, each epoch's
  shuffle comes from its own generator (seed + epoch), and the resume state
  carries the RNG states, so a resumed run equals an uninterrupted one;
- datasets with ``lengths`` (token counts: text, fusion) train in
  length-bucketed batches (``length_buckets``, default on) and are evaluated in
  length order, outputs restored to dataset order (crossemotion.datasets.buckets);
- optional R-Drop (``rdrop``: two dropout passes per batch, their symmetric KL
  added to the loss; see ``rdrop_loss``) and a supervised contrastive term on
  the classifier's input (``supcon``; see ``supcon_loss``);
- optional exponential moving average of the weights (``ema``; see
  ``WeightAverage``): dev scores, model selection and the best state use it;
- CUDA with AMP (fp16 autocast + GradScaler) when the device is CUDA;
- resumable: after every epoch ``state_dir/last.pt`` is written atomically and
  read back on the next start when its ``config_key`` matches;
- progress lines in the log (``EpochProgress``): a job under Snakemake has no
  terminal for tqdm's bar, and an epoch of real data lasts minutes, so at most
  every ``progress_seconds`` (and at the epoch's last step) the loop logs the
  epoch, step of steps, running loss, elapsed and remaining time.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from crossemotion import checkpoint
from crossemotion.datasets.buckets import LengthBucketBatchSampler, length_order, ordered_batches
from crossemotion.datasets.collate import Collate
from crossemotion.datasets.shards import labels_of
from crossemotion.device import autocast, resolve_device, seed_everything, to_device
from crossemotion.labels import EMOTIONS
from crossemotion.model_config import ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """The loop's settings: the training keys of a model config (their defaults are
    ``crossemotion.model_config.ModelConfig``'s)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    schedule: str
    warmup_fraction: float
    patience: int
    class_weights: bool
    label_smoothing: float
    rdrop: float
    supcon: float
    supcon_temperature: float
    ema: float
    grad_clip: float
    seed: int
    num_workers: int
    length_buckets: bool

    @classmethod
    def of(cls, cfg: ModelConfig) -> TrainConfig:
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


@dataclass
class FitResult:
    best_state: dict[str, Tensor]
    best_epoch: int
    best_score: float
    epochs_run: int
    log: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0


def clock_text(seconds: float) -> str:
    """``75.4`` -> ``1m15s``; ``3725`` -> ``1h02m05s``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class EpochProgress:
    """Progress lines of one training epoch, for logs without a terminal.

    ``step(done, loss)`` logs ``epoch E/N step S/T loss L elapsed X eta Y`` when
    ``every`` seconds have passed since the epoch began or since the last line,
    and always at the last step; the remaining time is the elapsed time per step
    times the steps left (the dev evaluation that follows is not in it).
    """

    def __init__(
        self,
        epoch: int,
        epochs: int,
        steps: int,
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every <= 0:
            raise ValueError(f"progress interval must be > 0 seconds, got {every}")
        self.epoch, self.epochs, self.steps, self.every = epoch, epochs, steps, every
        self.clock = clock
        self.start = self.last = clock()
        self.lines = 0

    def step(self, done: int, loss: float) -> None:
        now = self.clock()
        if now - self.last < self.every and done < self.steps:
            return
        self.last = now
        self.lines += 1
        elapsed = now - self.start
        remaining = elapsed / max(1, done) * max(0, self.steps - done)
        log.info(
            "epoch %d/%d step %d/%d loss %.4f elapsed %s eta %s",
            self.epoch, self.epochs, done, self.steps, loss, clock_text(elapsed),
            clock_text(remaining),
        )  # fmt: skip


def class_weights(labels: np.ndarray, n_classes: int = len(EMOTIONS)) -> Tensor:
    """Balanced weights n / (K * count_c); absent classes get 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def lr_lambda(schedule: str, total: int, warmup_fraction: float) -> Callable[[int], float]:
    total = max(1, total)
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if schedule == "linear_warmup":
        warm = max(1, round(warmup_fraction * total))

        def linear(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return max(0.0, (total - step) / max(1, total - warm))

        return linear
    raise ValueError(f"unknown schedule {schedule!r} (constant, cosine, linear_warmup)")


class WeightAverage:
    """An exponential moving average of a model's weights (Polyak averaging).

    After step ``t`` (counted from 1) every floating-point tensor of the state
    moves to ``d * average + (1 - d) * weights`` with ``d = min(decay, (1 + t) /
    (10 + t))``: the warm-up keeps the average from being dominated by the
    initial weights, which a plain 0.999 would still hold at 29% after four
    epochs of MELD text (1,252 steps). Other tensors are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def rate(self) -> float:
        """The decay of the step just taken."""
        return min(self.decay, (1 + self.steps) / (10 + self.steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        keep = self.rate()
        current = model.state_dict()
        for name, average in self.model.state_dict().items():
            value = current[name].detach()
            if average.is_floating_point():
                average.lerp_(value.to(average.dtype), 1.0 - keep)
            else:
                average.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "model": checkpoint.cpu_state_dict(self.model)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.model.load_state_dict(state["model"])


def num_classes(ds: Dataset) -> int:
    """Classes of a dataset's task (datasets carry ``classes``; default the 7 emotions)."""
    return len(getattr(ds, "classes", EMOTIONS))


def make_loader(
    ds: Dataset,
    batch_size: int,
    collate: Collate,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    length_buckets: bool = False,
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    lengths = getattr(ds, "lengths", None)
    if shuffle and length_buckets and lengths is not None:
        return DataLoader(
            ds,
            batch_sampler=LengthBucketBatchSampler(lengths, batch_size, seed),
            collate_fn=collate,
            generator=generator,
            num_workers=num_workers,
        )
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        generator=generator,
        num_workers=num_workers,
    )


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    ds: Dataset,
    collate: Collate,
    batch_size: int,
    device: torch.device,
    progress: bool | None = None,
) -> np.ndarray:
    """Softmax probabilities [N, classes] in dataset order.

    Datasets with ``lengths`` run shortest first (batches of similar widths,
    the least padding) and the rows are put back in dataset order.
    """
    model.eval()
    out = []
    lengths = getattr(ds, "lengths", None)
    order = length_order(lengths) if lengths is not None else None
    if order is not None:
        loader = DataLoader(
            ds, batch_sampler=ordered_batches(order, batch_size), collate_fn=collate
        )
    else:
        loader = make_loader(ds, batch_size, collate, shuffle=False)
    for batch in tqdm(
        loader, desc="predict", leave=False, disable=not progress if progress is not None else None
    ):
        batch = to_device(batch, device)
        with autocast(device):
            logits = model(batch)
        out.append(logits.float().softmax(-1).cpu())
    if not out:
        return np.zeros((0, num_classes(ds)), dtype=np.float32)
    probs = torch.cat(out).numpy()
    if order is None:
        return probs
    restored = np.empty_like(probs)
    restored[order] = probs
    return restored


def dev_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    pred = probs.argmax(1)
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "weighted_f1": float(f1_score(labels, pred, average="weighted", zero_division=0)),
    }


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = model.param_groups(cfg.lr) if hasattr(model, "param_groups") else None
    params = groups if groups else [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def fit(
    model: nn.Module,
    train_ds: Dataset,
    dev_ds: Dataset,
    cfg: TrainConfig,
    *,
    collate: Collate = None,
    device: torch.device | None = None,
    state_dir: Path | None = None,
    config_key: str = "",
    dev_score: Callable[[np.ndarray], dict[str, float]] | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    progress: bool | None = None,
    progress_seconds: float | None = None,
) -> FitResult:
    """Train ``model`` in place; return the best epoch's weights and the log.

    ``dev_score(probs)`` returns at least ``weighted_f1`` and ``accuracy`` on
    dev (default: item-level); ``on_epoch_end(epoch, row)`` runs after the
    resume state of that epoch is saved (tests raise from it to kill a run).
    ``progress`` shows tqdm's bars (None: when on a terminal);
    ``progress_seconds`` logs ``EpochProgress`` lines at most that far apart
    (None: none; a job passes its settings' interval).
    """
    device = device or resolve_device("auto")
    seed_everything(cfg.seed)
    model.to(device)
    average = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    # what dev scores and the best state come from
    scored = average.model if average is not None else model
    train_labels = labels_of(train_ds)
    dev_labels = labels_of(dev_ds)
    weight = (
        class_weights(train_labels, num_classes(train_ds)).to(device) if cfg.class_weights else None
    )
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.schedule, cfg.epochs * steps_per_epoch, cfg.warmup_fraction)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    score_fn = dev_score or (lambda probs: dev_metrics(dev_labels, probs))

    rows: list[dict[str, Any]] = []
    best_state = checkpoint.cpu_state_dict(scored)
    best_score, best_epoch, bad_epochs, start = -1.0, 0, 0, 0
    resume = checkpoint.load_resume(state_dir, config_key)
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        if average is not None:
            average.load_state_dict(resume["ema"])
        best_state, best_score = resume["best_state"], resume["best_score"]
        best_epoch, bad_epochs, start = resume["best_epoch"], resume["bad_epochs"], resume["epoch"]
        rows = list(resume["log"])
        checkpoint.set_rng_state(resume["rng"])
        log.info(
            "resuming after epoch %d (best dev wF1 %.4f at epoch %d)", start, best_score, best_epoch
        )

    for epoch in range(start + 1, cfg.epochs + 1):
        if bad_epochs >= cfg.patience:
            break
        t0 = time.perf_counter()
        loss = _train_epoch(
            model,
            train_ds,
            cfg,
            collate,
            device,
            criterion,
            optimizer,
            scheduler,
            scaler,
            epoch,
            progress,
            average,
            progress_seconds,
        )
        scores = score_fn(predict_probs(scored, dev_ds, collate, cfg.batch_size, device, progress))
        improved = scores["weighted_f1"] > best_score
        if improved:
            best_score, best_epoch, bad_epochs = scores["weighted_f1"], epoch, 0
            best_state = checkpoint.cpu_state_dict(scored)
        else:
            bad_epochs += 1
        row = {
            "epoch": epoch,
            "train_loss": round(loss, 6),
            "dev_accuracy": round(scores["accuracy"], 6),
            "dev_weighted_f1": round(scores["weighted_f1"], 6),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - t0, 3),
            "best": improved,
        }
        rows.append(row)
        log.info(
            "epoch %d/%d loss %.4f dev acc %.4f wF1 %.4f lr %.2e (%.1fs)%s",
            epoch, cfg.epochs, loss, scores["accuracy"], scores["weighted_f1"],
            row["lr"], row["seconds"], " *" if improved else "",
        )  # fmt: skip
        if state_dir is not None:
            checkpoint.save(
                Path(state_dir) / checkpoint.RESUME_FILE,
                {
                    "config_key": config_key,
                    "epoch": epoch,
                    "model": checkpoint.cpu_state_dict(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "best_state": best_state,
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "log": rows,
                    "rng": checkpoint.rng_state(),
                    "ema": average.state_dict() if average is not None else None,
                },
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    return FitResult(
        best_state=best_state,
        best_epoch=best_epoch,
        best_score=best_score,
        epochs_run=len(rows),
        log=rows,
        seconds=float(sum(r["seconds"] for r in rows)),
        resumed_from=start,
    )


def rdrop_loss(
    first: Tensor, second: Tensor, labels: Tensor, criterion: nn.Module, alpha: float
) -> Tensor:
    """R-Drop: the loss of two forward passes of one batch (different dropout
    masks) plus ``alpha`` times their symmetric KL divergence, halved so that
    ``alpha = 0`` is the plain loss at the same scale (the learning rate keeps its
    meaning). Penalising disagreement between dropout sub-models regularises
    fine-tuning on small data such as MELD's 10k utterances."""
    log_p, log_q = first.log_softmax(-1), second.log_softmax(-1)
    kl = nn.functional.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    kl = kl + nn.functional.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    return 0.5 * (criterion(first, labels) + criterion(second, labels) + alpha * 0.5 * kl)


def supcon_loss(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, the L_out form; Gunel et
    al. 2021 add it to fine-tuning's cross-entropy), one view per item: each
    anchor's mean log-probability of picking an item of its own class among all
    other items of the batch, by cosine similarity over ``temperature``, negated
    and averaged over the anchors that have such an item (0 if none has). It
    pulls same-emotion utterances together in the classifier's input space."""
    z = nn.functional.normalize(features.float(), dim=-1)
    own = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(own, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~own
    count = positive.sum(1)
    anchors = count > 0
    if not anchors.any():
        return z.sum() * 0.0
    mean_positive = log_prob.masked_fill(~positive, 0.0).sum(1)[anchors] / count[anchors]
    return -mean_positive.mean()


def classifier_of(model: nn.Module, classes: int) -> nn.Linear:
    """The model's output layer: its last ``nn.Linear`` with one output per class."""
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == classes]
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear with {classes} outputs: supcon needs "
            "the classifier's input"
        )
    return found[-1]


def _train_step(
    model: nn.Module,
    batch: dict[str, Any],
    cfg: TrainConfig,
    device: torch.device,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    captured: list[Tensor],
) -> tuple[float, int]:
    """One optimiser step on ``batch``: (its loss, its size)."""
    with autocast(device):
        logits = model(batch).float()
        if cfg.rdrop > 0:
            second = model(batch).float()
            loss = rdrop_loss(logits, second, batch["label"], criterion, cfg.rdrop)
        else:
            loss = criterion(logits, batch["label"])
        if cfg.supcon > 0:
            # one term per forward pass (two with R-Drop), averaged
            contrast = [supcon_loss(f, batch["label"], cfg.supcon_temperature) for f in captured]
            loss = loss + cfg.supcon * torch.stack(contrast).mean()
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return float(loss.detach()), int(batch["label"].shape[0])


def _train_epoch(
    model: nn.Module,
    ds: Dataset,
    cfg: TrainConfig,
    collate: Collate,
    device: torch.device,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    epoch: int,
    progress: bool | None,
    average: WeightAverage | None = None,
    progress_seconds: float | None = None,
) -> float:
    model.train()
    loader = make_loader(
        ds,
        cfg.batch_size,
        collate,
        True,
        cfg.seed * 1000 + epoch,
        cfg.num_workers,
        length_buckets=cfg.length_buckets,
    )
    total, count = 0.0, 0
    lines = (
        EpochProgress(epoch, cfg.epochs, len(loader), progress_seconds)
        if progress_seconds is not None
        else None
    )
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}",
        leave=False,
        disable=not progress if progress is not None else None,
    )
    # the classifier's inputs of the current batch, for supcon_loss
    captured: list[Tensor] = []
    hook = None
    if cfg.supcon > 0:
        hook = classifier_of(model, num_classes(ds)).register_forward_pre_hook(
            lambda _module, args: captured.append(args[0])
        )
    try:
        for done, batch in enumerate(bar, start=1):
            captured.clear()
            loss, n = _train_step(
                model, to_device(batch, device), cfg, device, criterion, optimizer, scheduler,
                scaler, captured,
            )  # fmt: skip
            if average is not None:
                average.update(model)
            total += loss * n
            count += n
            bar.set_postfix(loss=f"{total / max(1, count):.4f}")
            if lines is not None:
                lines.step(done, total / max(1, count))
    finally:
        if hook is not None:
            hook.remove()
    return total / max(1, count)
