"""Task-adaptive pretraining (TAPT) of the text encoder, then the config's fine-tuning.

Not part of ``make bench``. Gururangan et al. (2020, "Don't Stop Pretraining")
continue the encoder's masked-language-model pretraining on the task's own
unlabelled training text before fine-tuning; on small classification sets it
gained 0.5-4 points. MiniLM-L6 never read *Friends* dialogue: this is the one
way left to teach it the domain without a larger encoder or outside data.

1. **Adapt.** The training split's utterances, tokenized as the config's
   model reads them (``TextDataset``: the config's context, speakers and
   ``max_length``; token types are left at 0, which is all the config's
   utterance-alone input has), are masked BERT-style (15% of the non-special tokens:
   80% ``[MASK]``, 10% a random token, 10% kept) and the encoder learns to
   restore them (``AutoModelForMaskedLM``: the encoder plus a prediction head
   whose output layer is tied to the word embeddings; the sentence-embedding
   package ships no head, so its transform starts fresh). It learns from the
   training text alone, never its labels; dev's masked-token loss (fixed
   masks) is reported each epoch as a check, test's text is never read. The adapted
   encoder (the package's own pooler kept) and tokenizer go to
   ``{out}/encoder``, a Hugging Face directory that the config's ``encoder``
   key takes.
2. **Fine-tune.** The ``train_text`` job's own code
   (``bench.text_sweep.train_job``) with the config's keys and
   ``encoder: {out}/encoder``, for every seed; the record names it
   ``tapt{epochs}``. Compare its mean dev with the config's (the choice is made
   on dev; test is reported beside it).

    python -m bench.text_tapt --shards results/shards/meld/text --out tapt --device auto

Writes ``{out}/tapt.json`` (the adaptation: per-epoch training loss, dev
masked-token loss and accuracy, seconds) and ``{out}/records.json`` (the fine-tuning runs, as
``bench.text_sweep`` writes them). An existing ``{out}/encoder`` with its
``tapt.json`` is reused, so an interrupted run resumes at the fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.text_dialogue import read_split
from bench.text_sweep import (
    MINILM,
    SEEDS,
    Records,
    add_run_arguments,
    base_text_config,
    device_name,
    pool_run,
    run_line,
    train_job,
    train_job_spec,
)

MASK_PROB = 0.15
IGNORE = -100


def mask_tokens(
    ids: Tensor,
    special: Tensor,
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator,
    prob: float = MASK_PROB,
) -> tuple[Tensor, Tensor]:
    """BERT's masking: ``prob`` of the non-special tokens are chosen; of those 80%
    become ``mask_id``, 10% a random token, 10% stay. Returns (inputs, labels),
    labels ``IGNORE`` where nothing is to be predicted. At least one token per
    row with a maskable token is chosen, so no row is wasted."""
    maskable = ~special
    draw = torch.rand(ids.shape, generator=generator)
    chosen = (draw < prob) & maskable
    # a short utterance often draws no token at 15%: take its lowest draw instead
    empty = ~chosen.any(dim=1) & maskable.any(dim=1)
    if empty.any():
        lowest = draw.masked_fill(~maskable, 2.0).argmin(dim=1)
        chosen[empty, lowest[empty]] = True
    labels = ids.masked_fill(~chosen, IGNORE)
    action = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (action < 0.8)] = mask_id
    randomised = chosen & (action >= 0.8) & (action < 0.9)
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    inputs[randomised] = random_ids[randomised]
    return inputs, labels


def _pad(rows: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, (ids != 0).long()


def masked_lm_loss(
    mlm: nn.Module, inputs: Tensor, labels: Tensor, attention: Tensor
) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy and number of correct guesses over the masked positions
    only: the 30k-word output layer costs as much per token as the whole encoder,
    so it reads the ~15% chosen. ``mlm`` is a ``BertForMaskedLM``."""
    hidden = mlm.base_model(input_ids=inputs, attention_mask=attention).last_hidden_state
    chosen = labels != IGNORE
    # cls.predictions: transform (dense, gelu, LayerNorm), then the tied decoder
    logits = mlm.cls.predictions(hidden[chosen])
    target = labels[chosen]
    loss = nn.functional.cross_entropy(logits, target, reduction="sum")
    return loss, logits.argmax(-1).eq(target).sum()


def _special_mask(ids: Tensor, special_ids: Sequence[int]) -> Tensor:
    return torch.isin(ids, torch.tensor(sorted({*special_ids, 0}), dtype=torch.long))


def _batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    from crossemotion.datasets.buckets import LengthBucketBatchSampler

    return LengthBucketBatchSampler(lengths, batch_size, seed).batches()


def _epoch_loss(
    mlm: nn.Module,
    rows: Sequence[Sequence[int]],
    tok: Any,
    device: torch.device,
    seed: int,
    batch_size: int,
) -> dict[str, float]:
    """Masked-token loss and accuracy over ``rows`` with masks fixed by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    total = correct = count = 0.0
    mlm.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            ids, attention = _pad(rows[start : start + batch_size])
            inputs, labels = mask_tokens(
                ids, _special_mask(ids, tok.all_special_ids), tok.mask_token_id, len(tok), gen
            )
            loss, hits = masked_lm_loss(
                mlm, inputs.to(device), labels.to(device), attention.to(device)
            )
            total += float(loss)
            correct += float(hits)
            count += float((labels != IGNORE).sum())
    return {"loss": total / count, "accuracy": correct / count}


def adapt_encoder(
    train_rows: Sequence[Sequence[int]],
    dev_rows: Sequence[Sequence[int]],
    encoder: str,
    out_dir: Path,
    *,
    epochs: int,
    lr: float = 1e-4,
    batch_size: int = 32,
    warmup_fraction: float = 0.06,
    seed: int = 13,
    device: str = "auto",
    threads: int = 2,
) -> dict[str, Any]:
    """Continue ``encoder``'s masked-LM pretraining on token-id rows and save the
    adapted encoder to ``out_dir`` (written beside it, then renamed). Returns the
    per-epoch training loss and dev masked-token loss and accuracy (fixed masks;
    epoch 0: before adaptation)."""
    from transformers import AutoModel, AutoModelForMaskedLM

    from crossemotion.device import resolve_device, seed_everything
    from crossemotion.models.encoders import hub_offline, load_tokenizer, resolve_encoder

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if not train_rows or not dev_rows:
        raise ValueError("masked-LM adaptation needs training and dev utterances")
    torch.set_num_threads(threads)
    seed_everything(seed)
    dev = resolve_device(device)
    source = resolve_encoder(encoder)
    hub_offline()
    tok = load_tokenizer(encoder)
    mlm = AutoModelForMaskedLM.from_pretrained(source, local_files_only=True).to(dev)
    no_decay = ("bias", "LayerNorm.weight")
    params = [
        {
            "params": [p for n, p in mlm.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": 0.01,
        },
        {
            "params": [p for n, p in mlm.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimiser = torch.optim.AdamW(params, lr=lr)
    steps = epochs * math.ceil(len(train_rows) / batch_size)
    warmup = max(1, int(warmup_fraction * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    lengths = [len(r) for r in train_rows]
    gen = torch.Generator().manual_seed(seed)
    history = [{"epoch": 0, "dev": _epoch_loss(mlm, dev_rows, tok, dev, seed, 128)}]
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        mlm.train()
        summed = torch.zeros(2)
        for batch in _batches(lengths, batch_size, seed + epoch):
            ids, attention = _pad([train_rows[i] for i in batch])
            inputs, labels = mask_tokens(
                ids, _special_mask(ids, tok.all_special_ids), tok.mask_token_id, len(tok), gen
            )
            loss, _ = masked_lm_loss(mlm, inputs.to(dev), labels.to(dev), attention.to(dev))
            count = (labels != IGNORE).sum()
            summed += torch.stack([loss.detach().cpu(), count.float()])
            loss = loss / count.clamp(min=1).to(dev)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(mlm.parameters(), 1.0)
            optimiser.step()
            schedule.step()
        seconds = time.perf_counter() - t0
        history.append(
            {
                "epoch": epoch,
                # the epoch's running loss (fresh masks every epoch)
                "train_loss": float(summed[0] / summed[1]),
                # dev with the same fixed masks every epoch, so the rows compare
                "dev": _epoch_loss(mlm, dev_rows, tok, dev, seed, 128),
                "seconds": seconds,
            }
        )
        print(
            f"tapt epoch {epoch}: train {history[-1]['train_loss']:.3f} "
            f"dev {history[-1]['dev']['loss']:.3f} ({seconds:.0f} s)",
            flush=True,
        )
    # the package's BertModel (with its pooler) carrying the adapted weights
    adapted = AutoModel.from_pretrained(source, local_files_only=True)
    missing, unexpected = adapted.load_state_dict(mlm.base_model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise RuntimeError(f"adapted weights do not fit the encoder: {missing} {unexpected}")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    adapted.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return {"encoder": encoder, "epochs": epochs, "lr": lr, "batch_size": batch_size,
            "seed": seed, "history": history}  # fmt: skip


def utterance_rows(shards: Path, split: str, model_cfg: dict[str, Any]) -> list[list[int]]:
    """A split's utterances as the config's text model reads them (token ids)."""
    from crossemotion.datasets.text import TextDataset
    from crossemotion.models.text import TextConfig, tokenizer_for

    cfg = TextConfig.from_mapping(model_cfg)
    dataset = TextDataset(read_split(shards, split), cfg, tokenizer_for(cfg))
    return [list(e["input_ids"]) for e in dataset.encoded]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--mlm-epochs", type=int, default=10)
    parser.add_argument("--mlm-lr", type=float, default=1e-4)
    parser.add_argument("--mlm-batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS))
    parser.add_argument("--epochs", type=int, help="override the fine-tuning epochs (smoke runs)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = {**base_text_config(), **MINILM}
    encoder_dir = (args.out / "encoder").resolve()
    log = args.out / "tapt.json"
    if not (encoder_dir / "config.json").exists() or not log.exists():
        t0 = time.perf_counter()
        record = adapt_encoder(
            utterance_rows(args.shards, "train", base),
            utterance_rows(args.shards, "dev", base),
            base["encoder"],
            encoder_dir,
            epochs=args.mlm_epochs,
            lr=args.mlm_lr,
            batch_size=args.mlm_batch_size,
            device=args.device,
            threads=args.threads,
        )
        record.update(seconds=time.perf_counter() - t0, device=device_name(args.device))
        tmp = log.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(log)
    epochs = json.loads(log.read_text())["epochs"]
    variant = f"tapt{epochs}"
    args.device_name = device_name(args.device)
    changes = {**MINILM, "encoder": str(encoder_dir)}
    jobs = [train_job_spec(args, variant, changes, seed, "emotion") for seed in args.seeds]
    records = Records(args.out / "records.json")

    def done(r: dict[str, Any]) -> None:
        records.add(r)
        print(run_line(r, test=False), flush=True)

    pool_run(train_job, jobs, args.workers, done)
    for r in records.runs:
        print(run_line(r, test=True), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
