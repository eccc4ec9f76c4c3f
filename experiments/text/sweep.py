"""The real MELD text benchmark's model selection: variants on dev, then seeds.

Not part of ``make bench`` (it trains a dozen models). Runs the library's own
training job (``crossemotion.training.runner.train_and_evaluate``) on MELD text
shards, exactly as the ``train_text`` rule does, in parallel worker processes:

1. every variant of ``VARIANTS`` with the first seed; the one with the best
   **dev** weighted F1 is chosen (test scores are never looked at to choose);
   with ``--finalists A B ...`` those variants run with every seed instead and
   the one with the best **mean dev** weighted F1 over the seeds is chosen
   (one seed's dev spread, about 0.008, is as large as the variants' gaps);
2. the chosen variant with the other seeds, and the sentiment task with every
   seed, so the test figures are a mean ± sd over seeds.

    python -m experiments.text.sweep --shards results/shards/meld/text --out sweep/ --device auto

A round defined beforehand names its runs instead (``--runs VARIANT:SEED[:TASK]
...``, trained in that order, nothing chosen); ``--keep DIR`` also keeps each
finished run's probabilities without annotations (``experiments.text.kept``), so a
round can span machines.

The text shards come from ``snakemake --configfile config/meld_text.yaml --
results/shards/meld/text/{train,dev,test}/part-0000.parquet``. Writes
``{out}/sweep.json`` (or ``--records``; one record per run: variant, seed, task,
dev/test scores, seconds, device, rewritten as each run finishes, so a sweep cut
short keeps its finished runs) and every run's outputs under
``{out}/{task}/{variant}/seed{S}/``. Jobs start longest first (epochs x steps).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from experiments.text.kept import keep

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (13, 14, 15)
# Each differs from the benchmark config (config/meld_text.yaml) only in the keys named;
# the input keys (context, speakers) are named in every variant, so a variant means
# the same input whatever the config chose. ctx0's utterances are at most 95 tokens,
# so its max_length (the config's) truncates nothing.
_MPNET_TOP3 = {"context": 0, "speakers": False, "encoder": "mpnet", "freeze_layers": 9}
VARIANTS: dict[str, dict[str, Any]] = {
    "ctx0_nospeaker": {"context": 0, "speakers": False},
    "ctx0": {"context": 0, "speakers": True},
    "ctx1": {"context": 1, "speakers": True, "max_length": 160},
    "ctx2": {"context": 2, "speakers": True, "max_length": 192},
    "ctx3": {"context": 3, "speakers": True, "max_length": 224},
    "ctx2_future1": {"context": 2, "future": 1, "speakers": True, "max_length": 224},
    "ctx2_classweights": {
        "context": 2,
        "speakers": True,
        "max_length": 192,
        "class_weights": True,
    },
    "ctx2_lr3e-5_6ep": {
        "context": 2,
        "speakers": True,
        "max_length": 192,
        "lr": 3e-5,
        "epochs": 6,
    },
    # round 3: the chosen input (its best epoch was the last on every seed) with
    # more training, a larger step, smaller batches, or label smoothing
    "ctx0ns_ep8": {"context": 0, "speakers": False, "epochs": 8},
    "ctx0ns_lr1e-4": {"context": 0, "speakers": False, "lr": 1e-4},
    "ctx0ns_bs16": {"context": 0, "speakers": False, "batch_size": 16},
    "ctx0ns_ls0.1": {"context": 0, "speakers": False, "label_smoothing": 0.1},
    # neighbouring turns without speaker names
    "ctx1_nospeaker": {"context": 1, "speakers": False, "max_length": 160},
    "ctx0ns_future1": {"context": 0, "future": 1, "speakers": False, "max_length": 160},
    "ctx2_future1_nospeaker": {"context": 2, "future": 1, "speakers": False, "max_length": 224},
    # round 4: mean pooling averages the context turns' tokens with the target's,
    # so the target is a minority of its own vector; pool the target turn only
    "ctx2_future1_target": {
        "context": 2,
        "future": 1,
        "speakers": True,
        "max_length": 224,
        "pooling": "target",
    },
    "ctx3_target": {"context": 3, "speakers": True, "max_length": 224, "pooling": "target"},
    # round 5: regularising the chosen input's fine-tuning instead of changing it:
    # R-Drop (two dropout passes, their KL), layer-wise lr decay (alone, and with
    # a larger top step), a stronger head dropout
    "ctx0ns_rdrop1": {"context": 0, "speakers": False, "rdrop": 1.0},
    "ctx0ns_lld0.8_lr1e-4": {"context": 0, "speakers": False, "layer_decay": 0.8, "lr": 1e-4},
    "ctx0ns_lld0.9": {"context": 0, "speakers": False, "layer_decay": 0.9},
    "ctx0ns_drop0.3": {"context": 0, "speakers": False, "dropout": 0.3},
    # round 6: R-Drop won round 5 on dev; its strength, more epochs, and with the others
    "ctx0ns_rdrop3": {"context": 0, "speakers": False, "rdrop": 3.0},
    "ctx0ns_rdrop1_ep6": {"context": 0, "speakers": False, "rdrop": 1.0, "epochs": 6},
    "ctx0ns_rdrop1_lld0.8_lr1e-4": {
        "context": 0,
        "speakers": False,
        "rdrop": 1.0,
        "layer_decay": 0.8,
        "lr": 1e-4,
    },
    "ctx0ns_rdrop1_drop0.3": {"context": 0, "speakers": False, "rdrop": 1.0, "dropout": 0.3},
    # round 8: a supervised contrastive term on the pooled vector (weight, temperature)
    "ctx0ns_supcon0.1": {"context": 0, "speakers": False, "supcon": 0.1},
    "ctx0ns_supcon0.3": {"context": 0, "speakers": False, "supcon": 0.3},
    "ctx0ns_supcon1_t0.3": {
        "context": 0,
        "speakers": False,
        "supcon": 1.0,
        "supcon_temperature": 0.3,
    },
    # round 10: an exponential moving average of the weights (scored and kept
    # instead of the raw weights), and the encoder's top layers re-initialised
    "ctx0ns_ema0.99": {"context": 0, "speakers": False, "ema": 0.99},
    "ctx0ns_ema0.998": {"context": 0, "speakers": False, "ema": 0.998},
    "ctx0ns_reinit1": {"context": 0, "speakers": False, "reinit_layers": 1},
    "ctx0ns_reinit2": {"context": 0, "speakers": False, "reinit_layers": 2},
    # round 11: the average stacked with round 5-6's regularisers, a larger step, more epochs
    "ctx0ns_ema0.99_rdrop1_drop0.3": {
        "context": 0,
        "speakers": False,
        "ema": 0.99,
        "rdrop": 1.0,
        "dropout": 0.3,
    },
    "ctx0ns_ema0.99_rdrop1_lld0.8_lr1e-4": {
        "context": 0,
        "speakers": False,
        "ema": 0.99,
        "rdrop": 1.0,
        "layer_decay": 0.8,
        "lr": 1e-4,
    },
    "ctx0ns_ema0.99_ep6": {"context": 0, "speakers": False, "ema": 0.99, "epochs": 6},
    "ctx0ns_ema0.99_lr1e-4": {"context": 0, "speakers": False, "ema": 0.99, "lr": 1e-4},
    # round 12: a 5x larger encoder (MPNet-base, from PyPI) with its bottom frozen
    # and cached, so that three CPU seeds fit in hours: its top 3 of 12 layers trained
    "mpnet_top3": _MPNET_TOP3,
    # round 13: twice the trained depth (top 6 of 12), screened on one seed
    "mpnet_top6": {"context": 0, "speakers": False, "encoder": "mpnet", "freeze_layers": 6},
    # round 14: the config with dialogue context (2 past + 1 future turn, speaker
    # names), pooled over the target turn: MPNet has no token types, so only the
    # pooling tells the model which turn is the target
    "mpnet_top3_ctx2f1_target": {
        "context": 2,
        "future": 1,
        "speakers": True,
        "max_length": 224,
        "pooling": "target",
        "encoder": "mpnet",
        "freeze_layers": 9,
    },
    # round 15: round 12 set the config's encoder lr and epochs before any result;
    # with the frozen bottom read from the disk cache a screen costs ~17 minutes
    "mpnet_top3_lr1e-4": {**_MPNET_TOP3, "lr": 1e-4},
    "mpnet_top3_lr3e-5": {**_MPNET_TOP3, "lr": 3e-5},
    "mpnet_top3_ep6": {**_MPNET_TOP3, "epochs": 6},
}
# Rounds 1-11 (and the crossfit and TAPT experiments) fine-tuned MiniLM-L6 end to
# end; every variant that names no encoder says so, so that it means the same
# runs whatever encoder the config names.
MINILM = {"encoder": "minilm", "freeze_layers": 0}
VARIANTS = {name: {**MINILM, **keys} for name, keys in VARIANTS.items()}


def base_text_config() -> dict[str, Any]:
    """The config's text section without its ensemble: a variant is one run (its
    member 0 changed); averaging runs is experiments.text.average's."""
    cfg = yaml.safe_load((ROOT / "config" / "meld_text.yaml").read_text())
    return {k: v for k, v in cfg["models"]["text"].items() if k != "ensemble"}


def train_job(job: Mapping[str, Any]) -> dict[str, Any]:
    from crossemotion.models.registry import ShardInputs
    from crossemotion.training.runner import train_and_evaluate
    from crossemotion.training.settings import JobSettings

    shards = Path(job["shards"])
    inputs = ShardInputs(
        clips={},
        faces={},
        text={s: sorted((shards / s).glob("part-*.parquet")) for s in ("train", "dev", "test")},
    )
    t0 = time.perf_counter()
    metrics = train_and_evaluate(
        "text",
        "meld",
        job["model_cfg"],
        JobSettings(
            seed=job["seed"],
            device=job["device"],
            demo=False,
            task=job["task"],
            frozen_cache=job.get("frozen_cache"),
            threads=job["threads"],
        ),
        inputs,
        job["out_dir"],
        progress=False,
    )
    scores = {
        split: {
            k: metrics.get(split, {}).get(k) for k in ("n", "accuracy", "weighted_f1", "macro_f1")
        }
        for split in ("dev", "test")
    }
    return {
        "variant": job["variant"],
        "seed": job["seed"],
        "task": job["task"],
        "model_cfg": job["model_cfg"],
        **scores,
        "baseline_test_weighted_f1": (metrics.get("baseline") or {}).get("weighted_f1"),
        "seconds": time.perf_counter() - t0,
        "train_seconds": (metrics.get("train") or {}).get("seconds"),
        "best_epoch": (metrics.get("train") or {}).get("best_epoch"),
        "device": job["device_name"],
    }


def _job(args: argparse.Namespace, variant: str, seed: int, task: str) -> dict[str, Any]:
    return train_job_spec(args, variant, VARIANTS[variant], seed, task)


def train_job_spec(
    args: argparse.Namespace, variant: str, changes: Mapping[str, Any], seed: int, task: str
) -> dict[str, Any]:
    """One ``train_job``: the config's text keys with ``changes`` (``args.epochs``,
    when given, overrides the epochs), run with ``args``' shards, device and threads."""
    return {
        "shards": str(args.shards),
        "model_cfg": {
            **base_text_config(),
            **changes,
            **({"epochs": args.epochs} if args.epochs else {}),
        },
        "seed": seed,
        "task": task,
        "device": args.device,
        "threads": args.threads,
        "variant": variant,
        "device_name": args.device_name,
        "out_dir": str(args.out / task / variant / f"seed{seed}"),
        "frozen_cache": str(args.frozen_cache) if args.frozen_cache else None,
    }


def _cost(job: Mapping[str, Any]) -> float:
    cfg = job["model_cfg"]
    passes = 2 if cfg.get("rdrop") else 1
    return float(cfg["epochs"]) * 32 / float(cfg["batch_size"]) * passes


def pool_run(
    fn: Callable[[Mapping[str, Any]], dict[str, Any]],
    jobs: list[dict[str, Any]],
    workers: int,
    done: Callable[[dict[str, Any]], None],
) -> None:
    """Run ``fn`` over the jobs in worker processes, in order; ``done`` gets each
    record as it finishes, so an interrupted sweep keeps what it ran."""
    # spawn: CUDA cannot be re-initialised in a forked child
    with mp.get_context("spawn").Pool(workers) as pool:
        for record in pool.imap_unordered(fn, jobs):
            done(record)


def _run_all(
    jobs: list[dict[str, Any]], workers: int, done: Callable[[dict[str, Any]], None]
) -> None:
    """Train the jobs, longest first (the pool stays full to the end)."""
    pool_run(train_job, sorted(jobs, key=_cost, reverse=True), workers, done)


# what names a run in a records file: a rerun of the same run replaces its record
RECORD_KEY = ("kind", "variant", "task", "seed", "encoder_seed", "fold", "inputs")


class Records:
    """Every run's record in one JSON file, rewritten (temp name, then rename) as
    each run finishes. The records already in the file are kept, so an
    interrupted sweep rerun, or a second sweep given the same file, adds to them;
    a run recorded again replaces its earlier record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: list[dict[str, Any]] = []
        if path.is_file():
            try:
                runs = json.loads(path.read_text())
            except ValueError as exc:
                raise ValueError(f"{path} is not a records file: {exc}") from exc
            if not isinstance(runs, list):
                raise ValueError(f"{path} is not a records file: not a list of records")
            self.runs = runs

    def add(self, record: dict[str, Any]) -> None:
        key = _record_key(record)
        self.runs = [r for r in self.runs if _record_key(r) != key]
        self.runs.append(record)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.runs, indent=1, default=str))
        tmp.replace(self.path)


def _record_key(record: Mapping[str, Any]) -> str:
    return json.dumps([record.get(k) for k in RECORD_KEY], default=str)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every real-data text experiment takes (shards, device, workers)."""
    parser.add_argument("--shards", type=Path, required=True, help="results/shards/meld/text")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--frozen-cache",
        type=Path,
        help="keep encoders' frozen layers' output here between runs (the config's frozen_cache)",
    )


def parse_run(text: str) -> tuple[str, int, str]:
    """``VARIANT:SEED[:TASK]`` (task emotion unless named) as (variant, seed, task)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or parts[0] not in VARIANTS or not parts[1].isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected VARIANT:SEED[:TASK] with a variant of experiments.text.sweep"
        )
    task = parts[2] if len(parts) == 3 else "emotion"
    if task not in ("emotion", "sentiment"):
        raise argparse.ArgumentTypeError(f"{text!r}: task must be emotion or sentiment")
    return parts[0], int(parts[1]), task


def device_name(device: str) -> str:
    """What the runs' records name as their device: the GPU's name, or cpu."""
    import torch

    cuda = torch.cuda.is_available() and device != "cpu"
    return torch.cuda.get_device_name(0) if cuda else "cpu"


def run_line(r: Mapping[str, Any], test: bool) -> str:
    """One record as a log line; test scores only once the choice is made."""
    shown = f" test wF1 {r['test']['weighted_f1']:.4f}" if test else ""
    return (
        f"{r['task']:9} {r['variant']:20} seed {r['seed']}: dev wF1 "
        f"{r['dev']['weighted_f1']:.4f}{shown} ({r['seconds']:.0f} s, {r['device']})"
    )


def choose_on_dev(
    records: list[dict[str, Any]], finalists: list[str], variants: list[str] | None = None
) -> str:
    """The emotion variant with the best dev weighted F1: of the first seed, or, given
    finalists, their mean over every seed run; among ``variants`` when given (a
    records file may hold an earlier sweep's runs)."""
    emotion = [
        r
        for r in records
        if r["task"] == "emotion" and (variants is None or r["variant"] in variants)
    ]
    if not finalists:
        first = [r for r in emotion if r["seed"] == SEEDS[0]]
        if not first:
            raise ValueError(f"no emotion run of seed {SEEDS[0]} finished: nothing to choose from")
        return max(first, key=lambda r: r["dev"]["weighted_f1"])["variant"]
    dev: dict[str, list[float]] = {v: [] for v in finalists}
    for r in emotion:
        if r["variant"] in dev:
            dev[r["variant"]].append(r["dev"]["weighted_f1"])
    if missing := [v for v in finalists if not dev[v]]:
        raise ValueError(f"no emotion run of finalist(s) {', '.join(missing)} finished")
    return max(finalists, key=lambda v: sum(dev[v]) / len(dev[v]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, help="override every variant's epochs (smoke runs)")
    parser.add_argument(
        "--finalists",
        nargs="*",
        choices=list(VARIANTS),
        help="variants (among --variants) run with every seed; the best mean dev wins",
    )
    parser.add_argument(
        "--records", type=Path, help="where the records go (default: {out}/sweep.json)"
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        type=parse_run,
        metavar="VARIANT:SEED[:TASK]",
        help="train exactly these runs, in this order (a round defined beforehand), "
        "instead of choosing among --variants",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep each finished run's probabilities here too ({keep}/{task}/{variant}/"
        "seed{S}, experiments.text.kept): a folder of the repository, for rounds across sessions",
    )
    args = parser.parse_args(argv)
    if args.runs and args.finalists:
        parser.error("--runs names the runs itself: no --finalists with it")
    if missing := set(args.finalists or []) - set(args.variants):
        parser.error(f"finalists must be among --variants: {', '.join(sorted(missing))}")
    args.device_name = device_name(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    records = Records(args.records or args.out / "sweep.json")

    def done(r: dict[str, Any]) -> None:
        records.add(r)
        if args.keep:
            run = Path(r["task"], r["variant"], f"seed{r['seed']}")
            keep(args.out / run, args.keep / run)
        print(run_line(r, test=False), flush=True)

    if args.runs:
        pool_run(train_job, [_job(args, v, s, t) for v, s, t in args.runs], args.workers, done)
        return 0
    first = SEEDS[0]
    finalists = args.finalists or []
    jobs = [_job(args, v, first, "emotion") for v in args.variants]
    jobs += [_job(args, v, s, "emotion") for v in finalists for s in SEEDS[1:]]
    _run_all(jobs, args.workers, done)
    chosen = choose_on_dev(records.runs, finalists, args.variants)
    print(f"chosen on dev: {chosen}", flush=True)
    more = [_job(args, chosen, s, "emotion") for s in SEEDS[1:] if chosen not in finalists]
    more += [_job(args, chosen, s, "sentiment") for s in SEEDS]
    _run_all(more, args.workers, done)
    for r in records.runs:
        print(run_line(r, test=True), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
