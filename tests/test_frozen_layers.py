"""``freeze_layers``: the bottom of the text encoder frozen, run without dropout,
and cached while training — with the same outputs and gradients as computing it."""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path

import polars as pl
import pytest
import torch

from crossemotion.labels import EMOTIONS
from crossemotion.models.frozen_layers import (
    BottomCache,
    bottom_digest,
    encoder_layers,
    frozen_layer_cache,
)
from crossemotion.models.registry import ShardInputs, build_model, get_spec
from crossemotion.models.text import TextEncoder, preprocess_text
from crossemotion.training.runner import train_and_evaluate
from crossemotion.training.settings import JobSettings
from tests.vision_fixtures import write_meld_shards

CFG = {"encoder": "minilm", "max_length": 32, "context": 0, "pooling": "mean", "lr": 5e-5}
TEXTS = ["Oh my God!", "What are you talking about? I never said that.", "Yeah.", "Fine, fine."]


def _batch(texts: list[str]) -> dict[str, torch.Tensor]:
    return preprocess_text(texts, get_spec("text").configure(CFG))


def _model(freeze: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("text", {**CFG, "freeze_layers": freeze}, len(EMOTIONS))


def test_only_the_layers_above_the_frozen_ones_train() -> None:
    model = _model(4)
    encoder = model.text.encoder
    layers = encoder_layers(encoder)
    trained = {n for n, p in encoder.named_parameters() if p.requires_grad}
    top = {f"encoder.layer.{i}.{n}" for i in (4, 5) for n, _ in layers[i].named_parameters()}
    assert trained == top
    assert not any(p.requires_grad for p in encoder.embeddings.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


@pytest.mark.parametrize("count", [6, 7])
def test_freezing_every_layer_or_more_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match=r"freeze_layers must be in 1\.\.5"):
        _model(count)


def test_reinitialised_layers_may_not_be_frozen() -> None:
    cfg = {**CFG, "freeze_layers": 4, "reinit_layers": 3}
    with pytest.raises(ValueError, match="overlap: together at most 6 layers"):
        build_model("text", cfg, len(EMOTIONS))
    build_model("text", {**cfg, "reinit_layers": 2}, len(EMOTIONS))


def test_frozen_layers_have_no_dropout_in_training_mode() -> None:
    model = _model(4).train()
    encoder = model.text.encoder
    assert not encoder.embeddings.training and not encoder_layers(encoder)[3].training
    assert encoder_layers(encoder)[4].training
    kwargs = {k: v for k, v in _batch(TEXTS).items() if k != "label"}
    first = encoder(**kwargs, output_hidden_states=True).hidden_states
    second = encoder(**kwargs, output_hidden_states=True).hidden_states
    assert torch.equal(first[4], second[4])  # the frozen bottom's output
    assert not torch.equal(first[6], second[6])  # the trained top still drops out


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory) -> str:
    """A small random MPNet saved as a Hugging Face directory: the architecture of
    ``encoder: mpnet``, whose layers share a relative position bias."""
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    config = MPNetConfig(
        vocab_size=30527, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=64,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("mpnet") / "model"
    MPNetModel(config).save_pretrained(path)
    return str(path)


def _encoders(name: str, count: int) -> tuple[TextEncoder, TextEncoder]:
    """Two copies of the same pretrained encoder: one computes, one caches."""
    first, second = (TextEncoder(name, freeze_layers=count).eval() for _ in range(2))
    return first, second


@pytest.mark.parametrize("arch", ["minilm", "mpnet"])
def test_cached_forward_matches_the_full_forward_and_its_gradients(arch, tiny_mpnet) -> None:
    plain, cached = _encoders("minilm" if arch == "minilm" else tiny_mpnet, 3)
    batch, reordered = _batch(TEXTS), _batch(TEXTS[::-1][:3])
    with frozen_layer_cache(cached) as caches:
        cached(batch)  # fills the cache
        cached(reordered)  # other rows' padding: read back at their mask positions
        assert caches[0].misses == 4 and caches[0].hits == 3 and len(caches[0]) == 4
        out = cached(batch)[1]
        assert caches[0].hits == 7
        out.sum().backward()
    ref = plain(batch)[1]
    ref.sum().backward()
    assert torch.allclose(out, ref, atol=1e-5)
    top = dict(cached.encoder.named_parameters())
    grads = 0
    for name, p in plain.encoder.named_parameters():
        if p.requires_grad:
            assert torch.allclose(top[name].grad, p.grad, atol=1e-5), name
            grads += 1
        else:
            assert top[name].grad is None
    assert grads and cached.bottom_cache is None  # released with the block
    if arch == "mpnet":  # shared by every layer, so frozen with the bottom
        assert not cached.encoder.encoder.relative_attention_bias.weight.requires_grad


def test_the_cache_is_off_outside_training_and_for_unfrozen_encoders() -> None:
    frozen, full = _model(2), _model(0)
    with frozen_layer_cache(full) as caches:
        assert list(caches) == []
    frozen(_batch(TEXTS))
    assert frozen.text.bottom_cache is None
    copy.deepcopy(frozen)(_batch(TEXTS))  # copies (the weight average) work as usual


def test_training_with_frozen_layers_changes_only_the_top(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    meld = write_meld_shards(tmp_path / "shards")
    inputs = ShardInputs(clips={}, faces={}, text=meld.text)
    cfg = {**CFG, "freeze_layers": 4, "epochs": 2, "batch_size": 8, "threads": 1}
    before = _model(4).text.encoder.state_dict()
    out = tmp_path / "run"
    metrics = train_and_evaluate(
        "text", "meld", cfg, JobSettings(seed=3, device="cpu"), inputs, out, progress=False
    )
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    after = {k.removeprefix("text.encoder."): v for k, v in state.items()}
    for name, value in before.items():
        changed = not torch.equal(after[name], value)
        assert changed == name.startswith(("encoder.layer.4.", "encoder.layer.5.")), name
    assert json.loads((out / "metrics.json").read_text())["test"] == metrics["test"]


FUSION = {"encoder": "minilm", "max_length": 24, "context": 0, "image_arch": "resnet18",
          "weights": None, "dim": 32, "heads": 4, "size": 32, "faces": 2}  # fmt: skip


@pytest.mark.parametrize(("model", "whole"), [("text", "freeze"), ("fusion", "freeze_text")])
def test_a_wholly_frozen_encoder_takes_no_freeze_layers(model: str, whole: str) -> None:
    base = CFG if model == "text" else FUSION
    with pytest.raises(ValueError, match=r"freeze_layers .* whole text encoder frozen"):
        build_model(model, {**base, whole: True, "freeze_layers": 2}, len(EMOTIONS))


def test_fusion_trains_only_the_text_layers_above_the_frozen_ones(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    meld = write_meld_shards(tmp_path / "shards")
    for paths in meld.faces.values():  # the detector's columns, which fusion reads
        faces = pl.read_parquet(paths[0])
        faces.with_columns(
            frame_index=pl.int_range(pl.len()).over("key"), score=pl.lit(0.9)
        ).write_parquet(paths[0])
    cfg = {**FUSION, "freeze_layers": 5, "epochs": 2, "batch_size": 8, "threads": 1}
    torch.manual_seed(0)
    model = build_model("fusion", cfg, len(EMOTIONS))
    with frozen_layer_cache(model) as caches:
        assert [id(c) for c in caches] == [id(model.text.bottom_cache)]
    before = model.text.encoder.state_dict()
    out = tmp_path / "run"
    train_and_evaluate("fusion", "meld", cfg, JobSettings(seed=3, device="cpu"), meld, out,
                       progress=False)  # fmt: skip
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    after = {k.removeprefix("text.encoder."): v for k, v in state.items()}
    for name, value in before.items():
        assert (not torch.equal(after[name], value)) == name.startswith("encoder.layer.5."), name
    assert json.loads((out / "metrics.json").read_text())["test"]["n"] > 0


CACHE_LOG = "crossemotion.models.frozen_layers"


def _rows_logged(caplog: pytest.LogCaptureFixture, what: str) -> list[int]:
    found = (re.search(rf": (\d+) rows {what}$", r.getMessage()) for r in caplog.records)
    return [int(m.group(1)) for m in found if m]


def test_a_second_run_reads_the_frozen_bottom_from_disk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.set_num_threads(1)
    caplog.set_level(logging.INFO, logger=CACHE_LOG)
    meld = write_meld_shards(tmp_path / "shards")
    inputs = ShardInputs(clips={}, faces={}, text=meld.text)
    cfg = {**CFG, "freeze_layers": 4, "epochs": 2, "batch_size": 8, "threads": 1}
    cache = tmp_path / "cache"

    on_disk: dict[int, int] = {}

    def stored_rows(epoch: int, _row: dict) -> None:
        files = list(cache.glob("*.pt"))
        on_disk[epoch] = BottomCache().load(files[0]) if files else 0

    def run(name: str, **changes: int) -> pl.DataFrame:
        run_cfg = JobSettings(seed=3, device="cpu", frozen_cache=cache)
        train_and_evaluate(
            "text", "meld", {**cfg, **changes}, run_cfg, inputs, tmp_path / name,
            on_epoch_end=stored_rows, progress=False,
        )  # fmt: skip
        return pl.read_parquet(tmp_path / name / "predictions.parquet")

    first = run("first")
    assert _rows_logged(caplog, "read") == [0]
    [written] = _rows_logged(caplog, "written")
    # every distinct train and dev input, "Speaker: text" (dev is scored each epoch
    # inside the cache)
    turns = pl.concat([pl.read_parquet(meld.text[s]) for s in ("train", "dev")])
    assert written == turns.select("speaker", "text").n_unique()
    # on disk from the first epoch's end: a job killed in its second keeps them
    assert on_disk == {1: written, 2: written}
    [stored] = cache.iterdir()  # one file, no temporary left beside it
    assert stored.suffix == ".pt" and stored.stem.endswith("-ctx0-fut0-spk1-len32")
    caplog.clear()
    second = run("second")
    # every row came from disk, so nothing was added or written back
    assert _rows_logged(caplog, "read") == [written] and _rows_logged(caplog, "written") == []
    probs = [c for c in first.columns if c.startswith("p_")]
    assert torch.allclose(
        first.select(probs).to_torch(), second.select(probs).to_torch(), atol=1e-5
    )
    # another input form (a past turn) reads none of those rows: its own file,
    # and the utterance-alone file is left as it was
    caplog.clear()
    before = stored.read_bytes()
    run("context", context=1)
    assert _rows_logged(caplog, "read") == [0]
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [stored.name, stored.name.replace("-ctx0-", "-ctx1-")]
    )
    assert stored.read_bytes() == before


def test_the_disk_cache_is_named_by_the_frozen_weights_only() -> None:
    model = _model(4).text.encoder
    digest = bottom_digest(model, 4, "cpu")
    assert bottom_digest(model, 4, "cpu") == digest
    assert bottom_digest(model, 3, "cpu") != digest  # another bottom
    assert bottom_digest(model, 4, "cuda") != digest  # other kernels, other rounding
    with torch.no_grad():
        encoder_layers(model)[5].output.dense.weight.add_(1.0)  # trained: same bottom
        assert bottom_digest(model, 4, "cpu") == digest
        encoder_layers(model)[0].output.dense.weight.add_(1.0)  # frozen: another bottom
        assert bottom_digest(model, 4, "cpu") != digest


def test_the_disk_cache_round_trips_and_ignores_what_it_cannot_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = BottomCache()
    cache.rows = {b"\x01\x02": torch.randn(2, 8), b"\x03": torch.randn(5, 8)}
    path = tmp_path / "sub" / "bottom.pt"
    cache.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["bottom.pt"]
    back = BottomCache()
    assert back.load(path) == 2
    assert back.rows.keys() == cache.rows.keys()
    assert all(torch.equal(back.rows[k], v) for k, v in cache.rows.items())
    assert BottomCache().load(tmp_path / "missing.pt") == 0
    path.write_bytes(b"not a torch file")
    caplog.set_level(logging.WARNING, logger=CACHE_LOG)
    assert BottomCache().load(path) == 0
    assert "unreadable" in caplog.text
    # a model's cache over the garbage file computes its rows and replaces the file
    model = _model(4)
    digest = bottom_digest(model.text.encoder, 4, "cpu")
    (tmp_path / f"{digest}.pt").write_bytes(b"garbage")
    with frozen_layer_cache(model, tmp_path) as caches:
        model(_batch(TEXTS))
    assert caches[0].misses == len(TEXTS)
    assert BottomCache().load(tmp_path / f"{digest}.pt") == len(TEXTS)


def test_a_cache_that_cannot_be_written_fails_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = _model(4)
    blocked = tmp_path / "a file, not a directory"
    blocked.write_text("")
    caplog.set_level(logging.WARNING, logger=CACHE_LOG)
    with frozen_layer_cache(model, blocked) as caches:
        model(_batch(TEXTS))
    assert caches[0].misses == len(TEXTS) and "not written" in caplog.text
