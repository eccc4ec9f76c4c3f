"""Job sizes (crossemotion.resources), without Snakemake: the ends, the line between
them, the config's overrides, the shipped configs' data sizes, and the rule files'
one `resources:` line per rule."""

from __future__ import annotations

import re

import pytest

from crossemotion.config import load_config
from crossemotion.models.registry import MODELS
from crossemotion.resources import (
    FULL_MELD_UTTERANCES,
    RULES,
    Request,
    Sizing,
    data_fraction,
    fixed,
    job_resources,
    meld_utterances,
    sizing,
)
from tests.conftest import ROOT

DEMO = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml")
REAL = load_config(ROOT / "config" / "config.yaml")


def synth(utterances: dict[str, int]) -> dict:
    return {"synth": {"enabled": True, "utterances": utterances}}


def test_sizing_is_linear_between_its_ends_and_rounds_up() -> None:
    s = sizing(1000, 20, 9000, 420)
    assert s.at(0.0) == Request(1000, 20)
    assert s.at(1.0) == Request(9000, 420)
    assert s.at(0.5) == Request(5000, 220)
    # 1000 + 8000 * 0.01 = 1080 MB -> 1100; 20 + 400 * 0.01 = 24 min -> 25
    assert s.at(0.01) == Request(1100, 25)
    assert fixed(500, 10).at(0.3) == Request(500, 10)


def test_sizing_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        Sizing(Request(0, 10), Request(100, 10))
    with pytest.raises(ValueError, match=">= 0"):
        sizing(1000, 20, 9000, 420).at(-0.1)


def test_data_size_comes_from_the_config() -> None:
    assert meld_utterances(REAL) == FULL_MELD_UTTERANCES
    assert data_fraction(REAL) == 1.0
    demo = sum(DEMO["synth"]["utterances"].values())
    assert meld_utterances(DEMO) == demo
    assert data_fraction(DEMO) == pytest.approx(demo / FULL_MELD_UTTERANCES)
    # a bigger generated set asks more
    assert job_resources("decode_meld", synth({"train": 4000, "dev": 500, "test": 800})).mem_mb > (
        job_resources("decode_meld", DEMO).mem_mb
    )
    with pytest.raises(ValueError, match="utterances"):
        meld_utterances(synth({"train": 0}))


def test_demo_is_demo_sized_and_real_data_cluster_sized() -> None:
    for rule, s in RULES.items():
        assert job_resources(rule, REAL) == s.full, rule
        assert job_resources(rule, DEMO).mem_mb <= s.full.mem_mb, rule
    for name, info in MODELS.items():
        real = job_resources(f"train_{name}", REAL, model=info.sizing)
        demo = job_resources(f"train_{name}", DEMO, model=info.sizing)
        assert real == info.sizing.full
        assert demo.mem_mb < real.mem_mb and demo.runtime < real.runtime


def test_a_section_s_own_sizes_win() -> None:
    info = MODELS["text"]
    asked = job_resources(
        "train_text", DEMO, model=info.sizing, section={"mem_mb": 12000, "runtime": 360}
    )
    assert asked == Request(12000, 360)
    only_mem = job_resources("train_text", DEMO, model=info.sizing, section={"mem_mb": 5000})
    assert only_mem == Request(5000, info.sizing.at(data_fraction(DEMO)).runtime)


def test_an_unknown_rule_is_named() -> None:
    with pytest.raises(KeyError, match="train_nothing"):
        job_resources("train_nothing", DEMO)


RULE = re.compile(r"^\s*rule (\w+):$|^\s*rule:$")
NAME_LINE = re.compile(r'^\s*f?"(\w+)\{?\w*\}?"$')
RESOURCES_CALL = re.compile(r'^\s*\*\*job_resources\(f?"(\w+?)(\{model\})?"')


def block_after(lines: list[str], i: int) -> list[str]:
    """The non-blank lines indented under ``lines[i]`` (a directive's body)."""
    depth = len(lines[i]) - len(lines[i].lstrip())
    body = []
    for line in lines[i + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= depth:
            break
        if line.strip():
            body.append(line.strip())
    return body


def resources_by_rule() -> dict[str, list[str]]:
    """rule (``train_`` for the model loop's train_{model}) -> its `resources:` lines."""
    blocks: dict[str, list[str]] = {}
    for smk in sorted((ROOT / "workflow" / "rules").rglob("*.smk")):
        lines = smk.read_text().splitlines()
        rule = None
        for i, line in enumerate(lines):
            head = RULE.match(line)
            if head:
                # `rule:` has `name:` and the name on the line after it
                rule = head.group(1) or NAME_LINE.match(lines[i + 2]).group(1)
            elif rule and line.strip() == "resources:":
                blocks[rule] = block_after(lines, i)
    return blocks


def test_every_rule_asks_its_own_sizing_in_one_line() -> None:
    """No repeated resource blocks: each rule's `resources:` is one call naming
    that very rule (a copied line would size one rule like another)."""
    blocks = resources_by_rule()
    assert len(blocks) >= len(RULES), sorted(blocks)
    for rule, lines in blocks.items():
        assert len(lines) == 1, (rule, lines)
        call = RESOURCES_CALL.match(lines[0])
        assert call, (rule, lines)
        named = call.group(1) + ("{model}" if call.group(2) else "")
        if rule == "train_":  # the model loop: train_{model}
            assert named == "train_{model}", lines
        elif rule.startswith("ensemble_"):
            assert named == "ensemble", lines
        else:
            assert named == rule, lines
