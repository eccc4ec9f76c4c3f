from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from crossemotion.labels import EMOTIONS
from crossemotion.models.encoders import EncoderNotFoundError, load_tokenizer
from crossemotion.models.registry import ShardInputs, build_model, get_spec
from crossemotion.models.text import preprocess_text, tokenizer_for
from crossemotion.training.text_data import (
    TextDataset,
    build_contexts,
    collate_text,
    encode_pair,
)

CFG = {"encoder": "minilm", "max_length": 32, "context": 0, "pooling": "mean", "lr": 5e-5}


def utterances() -> pl.DataFrame:
    # rows deliberately out of dialogue order, two dialogues interleaved
    rows = [
        (2, 1, "Ross", "joy", "We were on a break!"),
        (1, 0, "Monica", "neutral", "Welcome to the party."),
        (2, 0, "Rachel", "anger", "You slept with her."),
        (1, 2, "Joey", "joy", "How you doin'?"),
        (1, 1, "Chandler", "surprise", "Could this BE any louder?"),
        (2, 2, "Rachel", "sadness", "I can't believe this."),
    ]
    return pl.DataFrame(
        {
            "split": ["train"] * len(rows),
            "dialogue_id": [r[0] for r in rows],
            "utterance_id": [r[1] for r in rows],
            "key": [f"dia{r[0]}_utt{r[1]}" for r in rows],
            "speaker": [r[2] for r in rows],
            "character": [r[2] for r in rows],
            "label": [r[3] for r in rows],
            "text": [r[4] for r in rows],
        },
        schema_overrides={"dialogue_id": pl.Int32, "utterance_id": pl.Int32},
    )


def test_context_uses_only_previous_turns_of_the_same_dialogue() -> None:
    frame = utterances()
    ctx = dict(zip(frame["key"], build_contexts(frame, 2), strict=True))
    assert ctx["dia1_utt0"] == ""
    assert ctx["dia2_utt0"] == ""
    assert ctx["dia1_utt1"] == "Monica: Welcome to the party."
    assert ctx["dia1_utt2"] == (
        "Monica: Welcome to the party. [SEP] Chandler: Could this BE any louder?"
    )
    # two turns back only: Rachel's first line and Ross, nothing from dialogue 1
    assert ctx["dia2_utt2"] == "Rachel: You slept with her. [SEP] Ross: We were on a break!"
    assert build_contexts(frame, 0) == [""] * frame.height


def test_long_context_is_cut_from_the_left_keeping_the_target() -> None:
    tok = tokenizer_for("minilm")
    context = " [SEP] ".join(f"Ross: line number {i}" for i in range(40))
    enc = encode_pair(tok, "I can't believe this.", context, max_length=24)
    ids = enc["input_ids"]
    assert len(ids) == 24 and len(enc["token_type_ids"]) == 24
    text = tok.decode(ids)
    assert text.endswith("believe this. [SEP]")
    assert "39" in text and "line number 0 " not in text
    assert enc["token_type_ids"][-1] == 1 and enc["token_type_ids"][0] == 0


def test_text_forward_backward_shapes() -> None:
    torch.manual_seed(0)
    model = build_model("text", CFG, len(EMOTIONS))
    batch = preprocess_text(["Oh my God!", "Fine."], CFG)
    logits = model(batch)
    assert logits.shape == (2, len(EMOTIONS))
    logits.sum().backward()
    assert model.head.weight.grad is not None
    assert any(p.grad is not None for p in model.text.encoder.parameters())


def test_frozen_encoder_trains_head_only() -> None:
    model = build_model("text", {**CFG, "freeze": True}, len(EMOTIONS))
    model(preprocess_text(["Hi."], CFG)).sum().backward()
    assert all(p.grad is None for p in model.text.encoder.parameters())
    assert model.head.weight.grad is not None
    assert len(model.param_groups(5e-5)) == 1


def test_cls_pooling_and_padding_do_not_change_the_prediction() -> None:
    model = build_model("text", {**CFG, "pooling": "cls"}, len(EMOTIONS)).eval()
    with torch.no_grad():
        alone = model(preprocess_text(["Hi."], CFG))
        padded = model(preprocess_text(["Hi.", "a much longer utterance than the first"], CFG))
    torch.testing.assert_close(alone[0], padded[0], atol=1e-4, rtol=1e-4)


def test_datasets_from_text_shards(tmp_path: Path) -> None:
    frame = utterances()
    paths = {}
    for split in ("train", "dev", "test"):
        path = tmp_path / split / "part-0000.parquet"
        path.parent.mkdir()
        frame.with_columns(pl.lit(split).alias("split")).write_parquet(path)
        paths[split] = [path]
    spec = get_spec("text")
    data = spec.make_datasets({**CFG, "context": 1}, "meld", ShardInputs({}, {}, paths))
    train = data["train"]
    assert len(train) == frame.height
    assert train.meta.columns == ["id", "key", "split", "speaker", "character", "label"]
    first = train.meta["key"].to_list().index("dia1_utt1")
    item = train[first]
    assert int(item["label"]) == EMOTIONS.index("surprise")
    assert int(item["token_type_ids"].max()) == 1  # context segment present
    batch = collate_text([train[i] for i in range(3)])
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["label"].dtype == torch.int64


def test_unknown_encoder_fails_clearly() -> None:
    with pytest.raises(EncoderNotFoundError, match="not found"):
        load_tokenizer("/nonexistent/encoder-dir")


def test_dataset_on_real_meld_utterances(meld_csvs: Path) -> None:
    raw = pl.read_csv(meld_csvs / "dev_sent_emo.csv", encoding="utf8-lossy").head(60)
    frame = pl.DataFrame(
        {
            "split": "dev",
            "dialogue_id": raw["Dialogue_ID"],
            "utterance_id": raw["Utterance_ID"],
            "key": [
                f"dia{d}_utt{u}"
                for d, u in zip(raw["Dialogue_ID"], raw["Utterance_ID"], strict=True)
            ],
            "speaker": raw["Speaker"],
            "character": raw["Speaker"],
            "label": raw["Emotion"],
            "text": raw["Utterance"],
        }
    )
    data = TextDataset(frame, {**CFG, "context": 2, "max_length": 64}, tokenizer_for("minilm"))
    assert len(data) == 60 and max(data.lengths) <= 64
    model = build_model("text", CFG, len(EMOTIONS)).eval()
    with torch.no_grad():
        logits = model(collate_text([data[i] for i in range(8)]))
    assert logits.shape == (8, len(EMOTIONS)) and torch.isfinite(logits).all()
