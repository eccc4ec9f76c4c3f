"""Render docs/benchmarks.md from results/bench/*.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, sub, out)
    elif not isinstance(value, list):
        out.append((prefix, value))


def render(results: Path) -> str:
    files = sorted(results.glob("*.json"))
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (bench/run.py); raw results in `results/bench/*.json`.",
        "Ratios compare contenders measured side by side in one run on the same inputs.",
        "Where the time goes for unmet targets, and what would close them:",
        "[benchmark-notes.md](benchmark-notes.md) (written by hand for a dated run).",
        "",
    ]
    machine: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    for path in files:
        data = json.loads(path.read_text())
        machine = data.get("machine", machine)
        for check in data.get("checks", []):
            checks.append({"benchmark": data.get("benchmark", path.stem), **check})
    if machine:
        lines += ["## Machine", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in machine.items()]
        lines.append("")
    if checks:
        lines += ["## Targets", "", "| benchmark | target | measured | met |", "|---|---|---|---|"]
        for c in checks:
            met = "yes" if c.get("met") else "**no**"
            lines.append(
                f"| {c['benchmark']} | {c.get('target', '')} | {_fmt(c.get('measured'))} | {met} |"
            )
        lines.append("")
    for path in files:
        data = json.loads(path.read_text())
        lines += [f"## {data.get('benchmark', path.stem)}", ""]
        if data.get("note"):
            lines += [str(data["note"]), ""]
        flat: list[tuple[str, Any]] = []
        _flatten(
            "", {k: v for k, v in data.items() if k not in ("machine", "checks", "note")}, flat
        )
        lines += ["| measure | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in flat]
        lines.append("")
    return "\n".join(lines)
