from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from crossemotion.datasets.buckets import LengthBucketBatchSampler
from crossemotion.datasets.text import (
    DialogueFormat,
    DialogueWindow,
    TextDataset,
    Turn,
    collate_text,
    dialogue_windows,
    encode_dialogue,
    split_room,
    window_of,
)
from crossemotion.labels import EMOTIONS
from crossemotion.models.encoders import EncoderNotFoundError, load_tokenizer
from crossemotion.models.registry import ShardInputs, build_model, get_spec
from crossemotion.models.text import TextConfig, preprocess_text, tokenizer_for
from crossemotion.training.loop import predict_probs

CFG = {"encoder": "minilm", "max_length": 32, "context": 0, "pooling": "mean", "lr": 5e-5}


def text_cfg(cfg: dict[str, Any]) -> TextConfig:
    return get_spec("text").configure(cfg)


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


def test_windows_take_neighbours_of_the_same_dialogue_only() -> None:
    frame = utterances()
    windows = dict(zip(frame["key"], dialogue_windows(frame, 2, 1), strict=True))
    assert windows["dia1_utt0"].past == ()
    assert windows["dia2_utt0"].past == ()
    assert windows["dia1_utt1"].target == Turn("Chandler", "Could this BE any louder?")
    assert windows["dia1_utt1"].past == (Turn("Monica", "Welcome to the party."),)
    assert windows["dia1_utt1"].future == (Turn("Joey", "How you doin'?"),)
    # two turns back only, oldest first; nothing after the dialogue's last turn
    assert windows["dia2_utt2"].past == (
        Turn("Rachel", "You slept with her."),
        Turn("Ross", "We were on a break!"),
    )
    assert windows["dia2_utt2"].future == ()
    assert windows["dia1_utt2"].future == ()
    assert all(w.past == () and w.future == () for w in dialogue_windows(frame, 0, 0))


def _segments(tok, enc: dict[str, list[int]]) -> list[tuple[int, str]]:
    """(token type, decoded text) per run of equal token types."""
    out: list[tuple[int, list[int]]] = []
    for i, t in zip(enc["input_ids"], enc["token_type_ids"], strict=True):
        if out and out[-1][0] == t:
            out[-1][1].append(i)
        else:
            out.append((t, [i]))
    return [(t, tok.decode(ids)) for t, ids in out]


def test_target_turn_sits_in_its_own_segment_with_its_speaker() -> None:
    tok = tokenizer_for("minilm")
    window = DialogueWindow(
        Turn("Ross", "We were on a break!"),
        past=(Turn("Rachel", "You slept with her."),),
        future=(Turn("Rachel", "I cannot believe this."),),
    )
    fmt = DialogueFormat(past=2, future=1, speakers=True, max_length=64)
    assert _segments(tok, encode_dialogue(tok, window, fmt)) == [
        (0, "[CLS] rachel : you slept with her. [SEP]"),
        (1, "ross : we were on a break! [SEP]"),
        (0, "rachel : i cannot believe this. [SEP]"),
    ]
    # a turn with no past keeps the target in segment 1 (the model's constant marking)
    first = DialogueWindow(Turn("Rachel", "You slept with her."))
    assert _segments(tok, encode_dialogue(tok, first, fmt)) == [
        (0, "[CLS]"),
        (1, "rachel : you slept with her. [SEP]"),
    ]
    # no context configured: the plain single-segment input, speakers optional
    plain = DialogueFormat(speakers=False, max_length=64)
    assert _segments(tok, encode_dialogue(tok, window, plain)) == [
        (0, "[CLS] we were on a break! [SEP]")
    ]


def test_long_context_is_cut_from_its_far_ends_keeping_the_target() -> None:
    tok = tokenizer_for("minilm")
    window = DialogueWindow(
        Turn("Rachel", "I cannot believe this."),
        past=tuple(Turn("Ross", f"past line {i}") for i in range(30)),
        future=tuple(Turn("Joey", f"next line {i}") for i in range(30)),
    )
    fmt = DialogueFormat(past=30, future=30, speakers=True, max_length=40)
    enc = encode_dialogue(tok, window, fmt)
    assert len(enc["input_ids"]) == 40 and len(enc["token_type_ids"]) == 40
    (t0, past), (t1, target), (t2, future) = _segments(tok, enc)
    assert (t0, t1, t2) == (0, 1, 0)
    assert target == "rachel : i cannot believe this. [SEP]"
    # the nearest turns survive: the last past line and the first future line
    assert past.endswith("past line 29 [SEP]") and "past line 0 " not in past
    assert future.startswith("joey : next line 0 ") and "next line 29" not in future
    # the past gets at least half the room the target leaves
    n_target = len(tok.encode("Rachel: I cannot believe this.", add_special_tokens=False))
    n_past = enc["token_type_ids"].index(1)  # [CLS] + past + [SEP]
    assert n_past - 1 >= (40 - 2 - n_target) // 2
    # only the past given: it takes all the room
    past_only = encode_dialogue(tok, DialogueWindow(window.target, past=window.past), fmt)
    assert len(past_only["input_ids"]) == 40 and past_only["token_type_ids"][-1] == 1
    # a target longer than max_length alone is cut, never dropped
    long = DialogueWindow(Turn("Ross", "word " * 100), past=window.past)
    enc = encode_dialogue(tok, long, fmt)
    assert len(enc["input_ids"]) == 40 and enc["token_type_ids"][1:] == [1] * 39


@pytest.mark.parametrize(
    ("room", "n_past", "n_future", "expected"),
    [
        (20, 5, 5, (5, 5)),  # both fit with their [SEP]s
        (10, 20, 20, (4, 4)),  # half each, one [SEP] each
        (11, 20, 20, (5, 4)),  # the odd token goes to the past
        (10, 20, 2, (6, 2)),  # the future needs less: the past takes the rest
        (10, 2, 20, (2, 6)),
        (10, 0, 20, (0, 9)),
        (2, 20, 20, (1, 0)),  # room for one side only: the past
        (1, 20, 20, (0, 0)),
    ],
)
def test_split_room(room: int, n_past: int, n_future: int, expected: tuple[int, int]) -> None:
    assert split_room(room, n_past, n_future) == expected
    kept_p, kept_f = expected
    assert kept_p + (kept_p > 0) + kept_f + (kept_f > 0) <= room


def test_target_pooling_averages_the_target_turn_only() -> None:
    from crossemotion.models.text import pool

    cfg = {**CFG, "context": 1, "future": 1, "max_length": 64, "pooling": "target"}
    model = build_model("text", cfg, len(EMOTIONS)).eval()
    unit = {"text": "We were on a break!", "speaker": "Ross", "context": ["You slept with her."]}
    with torch.no_grad():
        # beside a shorter row: padding is never averaged
        batch = preprocess_text([unit, "Fine."], text_cfg(cfg))
        hidden, pooled = model.text(batch)
    types, mask = batch["token_type_ids"], batch["attention_mask"]
    for row in (0, 1):
        target = types[row] == 1
        assert 0 < int(target.sum()) < int(mask[row].sum())
        torch.testing.assert_close(pooled[row], hidden[row, target].mean(0))
    # without context every token is of type 0: target pooling is the mean
    plain = preprocess_text(["Fine.", "We were on a break!"], text_cfg(CFG))
    with torch.no_grad():
        plain_hidden, plain_pooled = model.text(plain)
    torch.testing.assert_close(
        plain_pooled, pool(plain_hidden, plain["attention_mask"], "mean"), atol=1e-6, rtol=1e-6
    )
    # the context still informs the target's states, so it moves the pooled vector
    with torch.no_grad():
        other = {**unit, "context": ["Welcome to the party."]}
        _, moved = model.text(preprocess_text([other], text_cfg(cfg)))
    assert not torch.allclose(moved[0], pooled[0], atol=1e-4)
    with pytest.raises(ValueError, match="pooling must be one of mean, cls, target, got 'max'"):
        build_model("text", {**cfg, "pooling": "max"}, len(EMOTIONS))
    # mean pooling of the same batch averages the context too
    assert not torch.allclose(pool(hidden, mask, "mean", types)[0], pooled[0], atol=1e-4)


def test_serving_units_are_formatted_as_in_training() -> None:
    cfg = {**CFG, "context": 2, "future": 1, "max_length": 64}
    data = TextDataset(utterances(), text_cfg(cfg), tokenizer_for("minilm"))
    keys = data.meta["key"].to_list()
    units = [
        {
            "text": "Could this BE any louder?",
            "speaker": "Chandler",
            "context": [{"speaker": "Monica", "text": "Welcome to the party."}],
            # more future turns than the model uses: only the first counts
            "future": [{"speaker": "Joey", "text": "How you doin'?"}, "Not used."],
        },
        {
            "text": "How you doin'?",
            "speaker": "Joey",
            # more past turns than the model uses: only the last two count
            "context": [
                "Not used.",
                {"speaker": "Monica", "text": "Welcome to the party."},
                {"speaker": "Chandler", "text": "Could this BE any louder?"},
            ],
        },
    ]
    batch = preprocess_text([*units, "Fine."], text_cfg(cfg))
    for i, key in enumerate(["dia1_utt1", "dia1_utt2"]):
        expected = data.encoded[keys.index(key)]
        n = len(expected["input_ids"])
        assert batch["input_ids"][i, :n].tolist() == expected["input_ids"]
        assert batch["token_type_ids"][i, :n].tolist() == expected["token_type_ids"]
        assert int(batch["attention_mask"][i].sum()) == n
    assert window_of("Fine.") == DialogueWindow(Turn(None, "Fine."))
    with pytest.raises(ValueError, match="text unit"):
        window_of(42)
    with pytest.raises(ValueError, match="dialogue turn"):
        window_of({"text": "hi", "context": [{"speaker": "Ross"}]})


def test_length_buckets_cover_every_item_once_deterministically() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, 1003).tolist()
    sampler = LengthBucketBatchSampler(lengths, batch_size=16, seed=7, pool_batches=8)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 63  # ceil(1003 / 16)
    assert sorted(i for b in batches for i in b) == list(range(1003))
    assert sum(len(b) < 16 for b in batches) == 1
    assert batches == list(LengthBucketBatchSampler(lengths, 16, 7, 8))
    assert batches != list(LengthBucketBatchSampler(lengths, 16, 8, 8))
    # padded cost (batch width x rows) well under that of random batches
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    order = rng.permutation(1003)
    random_cost = sum(
        max(lengths[i] for i in order[s : s + 16]) * len(order[s : s + 16])
        for s in range(0, 1003, 16)
    )
    assert padded < 0.75 * random_cost
    assert padded >= sum(lengths)


def test_length_ordered_prediction_returns_dataset_order() -> None:
    torch.manual_seed(0)
    cfg = {**CFG, "context": 2, "future": 1}
    data = TextDataset(utterances(), text_cfg(cfg), tokenizer_for("minilm"))
    assert len(set(data.lengths)) > 1
    model = build_model("text", cfg, len(EMOTIONS)).eval()
    probs = predict_probs(model, data, collate_text, 4, torch.device("cpu"))
    with torch.no_grad():
        one_by_one = [model(collate_text([data[i]]))[0].softmax(-1) for i in range(len(data))]
    np.testing.assert_allclose(probs, torch.stack(one_by_one).numpy(), atol=1e-5)


def test_text_forward_backward_shapes() -> None:
    torch.manual_seed(0)
    model = build_model("text", CFG, len(EMOTIONS))
    batch = preprocess_text(["Oh my God!", "Fine."], text_cfg(CFG))
    logits = model(batch)
    assert logits.shape == (2, len(EMOTIONS))
    logits.sum().backward()
    assert model.head.weight.grad is not None
    assert any(p.grad is not None for p in model.text.encoder.parameters())


def test_frozen_encoder_trains_head_only() -> None:
    model = build_model("text", {**CFG, "freeze": True}, len(EMOTIONS))
    model(preprocess_text(["Hi."], text_cfg(CFG))).sum().backward()
    assert all(p.grad is None for p in model.text.encoder.parameters())
    assert model.head.weight.grad is not None
    assert len(model.param_groups(5e-5)) == 1


def test_layer_decay_gives_each_encoder_layer_its_step() -> None:
    model = build_model("text", {**CFG, "layer_decay": 0.5, "head_lr": 1e-3}, len(EMOTIONS))
    groups = model.param_groups(1e-4)
    encoder = dict(model.text.encoder.named_parameters())
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    # every parameter in exactly one group
    assert sum(len(g["params"]) for g in groups) == len(lr_of) == len(encoder) + 2
    n = model.text.encoder.config.num_hidden_layers
    for name, p in encoder.items():
        if name.startswith("encoder.layer."):
            layer = int(name.split(".")[2])
            assert lr_of[id(p)] == pytest.approx(1e-4 * 0.5 ** (n - 1 - layer)), name
        elif name.startswith("embeddings."):
            assert lr_of[id(p)] == pytest.approx(1e-4 * 0.5**n), name
        else:
            assert lr_of[id(p)] == 1e-4, name
    assert groups[0]["lr"] == 1e-4 and groups[-1]["lr"] == 1e-3
    assert all(lr_of[id(p)] == 1e-3 for p in model.head.parameters())
    # the default is one step for the whole encoder, as before the key existed
    plain = build_model("text", CFG, len(EMOTIONS)).param_groups(1e-4)
    assert [(len(g["params"]), g["lr"]) for g in plain] == [(len(encoder), 1e-4), (2, 1e-3)]


def test_reinit_layers_redraws_the_top_layers_only() -> None:
    kept = build_model("text", CFG, len(EMOTIONS))
    model = build_model("text", {**CFG, "reinit_layers": 2}, len(EMOTIONS))
    encoder = model.text.encoder
    n = encoder.config.num_hidden_layers
    std = encoder.config.initializer_range
    before = dict(kept.text.encoder.named_parameters())
    for name, p in encoder.named_parameters():
        top = name.startswith("encoder.layer.") and int(name.split(".")[2]) >= n - 2
        if not top:
            assert torch.equal(p, before[name]), name
        elif name.endswith("LayerNorm.weight"):
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.endswith("bias"):
            assert torch.equal(p, torch.zeros_like(p)), name
        else:
            assert not torch.equal(p, before[name]), name
            assert float(p.detach().std()) == pytest.approx(std, rel=0.1), name
    with pytest.raises(ValueError, match=f"reinit_layers must be in 1..{n}"):
        build_model("text", {**CFG, "reinit_layers": n + 1}, len(EMOTIONS))


def test_layer_decay_outside_0_1_is_refused() -> None:
    from crossemotion.config import ConfigError, validate_config
    from tests.conftest import ROOT

    cfg = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    cfg["models"]["text"]["layer_decay"] = 0.8
    validate_config(cfg)
    for bad in (0, 1.2):
        cfg["models"]["text"]["layer_decay"] = bad
        with pytest.raises(ConfigError, match="layer_decay"):
            validate_config(cfg)


def test_cls_pooling_and_padding_do_not_change_the_prediction() -> None:
    model = build_model("text", {**CFG, "pooling": "cls"}, len(EMOTIONS)).eval()
    with torch.no_grad():
        alone = model(preprocess_text(["Hi."], text_cfg(CFG)))
        padded = model(
            preprocess_text(["Hi.", "a much longer utterance than the first"], text_cfg(CFG))
        )
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
    data = spec.make_datasets(text_cfg({**CFG, "context": 1}), "meld", ShardInputs({}, {}, paths))
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
    data = TextDataset(
        frame, text_cfg({**CFG, "context": 2, "max_length": 64}), tokenizer_for("minilm")
    )
    assert len(data) == 60 and max(data.lengths) <= 64
    model = build_model("text", CFG, len(EMOTIONS)).eval()
    with torch.no_grad():
        logits = model(collate_text([data[i] for i in range(8)]))
    assert logits.shape == (8, len(EMOTIONS)) and torch.isfinite(logits).all()


def test_fusion_formats_text_like_the_text_model() -> None:
    from crossemotion.models.fusion import preprocess as fusion_preprocess

    cfg = {**CFG, "context": 2, "future": 1, "max_length": 64, "faces": 2, "size": 32}
    unit = {
        "text": "We were on a break!",
        "speaker": "Ross",
        "context": [{"speaker": "Rachel", "text": "You slept with her."}],
        "images": [],
    }
    text_only = {k: v for k, v in cfg.items() if k not in ("faces", "size")}
    text_batch = preprocess_text([unit], text_cfg(text_only))
    fusion_batch = fusion_preprocess([unit], [[]], get_spec("fusion").configure(cfg))
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(text_batch[key], fusion_batch[key])
    assert int(text_batch["token_type_ids"].max()) == 1


def test_schema_offers_the_poolings_the_encoder_takes() -> None:
    import yaml

    from crossemotion.config import schema_path
    from crossemotion.models.text import POOLINGS

    models = yaml.safe_load(schema_path().read_text())["properties"]["models"]["properties"]
    for name in ("text", "fusion"):
        enum = models[name]["properties"]["pooling"]["enum"]
        assert sorted(enum) == sorted(POOLINGS), name


@pytest.mark.parametrize("model", ["text", "fusion"])
def test_a_checkpoint_loads_without_reading_pretrained_encoder_weights(
    tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its state dict replaces every weight: only the encoder's config.json is read."""
    from transformers import AutoModel

    from crossemotion import checkpoint
    from crossemotion.inference import load_predictor
    from crossemotion.models.encoders import load_text_encoder
    from tests.test_serving import write_checkpoint

    path = write_checkpoint(tmp_path, model, "meld", {"encoder": "minilm", "weights": None})
    saved = checkpoint.load(path)["state_dict"]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pretrained encoder weights were read")

    monkeypatch.setattr(AutoModel, "from_pretrained", refuse)
    loaded = load_predictor(path, device="cpu").net.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    # outside a checkpoint load, building an encoder still reads the pretrained weights
    with pytest.raises(AssertionError, match="pretrained encoder weights were read"):
        load_text_encoder("minilm")


def test_a_checkpoint_load_names_a_missing_encoder_config() -> None:
    """Without the encoder's config.json the architecture is unknown: the same clear
    error as training gives (naming the model and the cache), not a half-built model."""
    from crossemotion.models.encoders import architecture_only, load_text_encoder

    with architecture_only(), pytest.raises(EncoderNotFoundError, match="no-such-encoder"):
        load_text_encoder("crossemotion-tests/no-such-encoder")
