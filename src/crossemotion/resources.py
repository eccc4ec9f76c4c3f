"""What each workflow job asks the executor for: memory (MB) and time (minutes).

One function, ``job_resources``, sizes every rule of the workflow from three
things: the rule's ``Sizing`` (``RULES`` here; a training job's comes from the
model table, ``crossemotion.models.registry.MODELS``), the config (a model's or
ensemble member's own ``mem_mb``/``runtime`` win), and the size of the data the
config runs on (``data_fraction``). A ``Sizing`` gives a job's request at the
two ends of that size: ``small`` for the embedded demo (a few hundred generated
utterances; the jobs need well under 2 GB and minutes there, so every demo job
fits a 2-CPU, 16 GB node side by side with another) and ``full`` for the
official MELD (13,708 utterances; cluster-sized). In between, the request grows
linearly with the number of utterances.

Leaf module: the workflow reads it while the DAG is built, without torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FULL_MELD_UTTERANCES",
    "RULES",
    "Request",
    "Sizing",
    "data_fraction",
    "fixed",
    "job_resources",
    "meld_utterances",
    "sizing",
]

# Utterances of the official MELD (train 9,989, dev 1,109, test 2,610): the
# `full` end of every Sizing.
FULL_MELD_UTTERANCES = 13_708
# Requests are rounded up to these steps, so a small change of the data size
# does not change a job's resources (which would not rerun it, but reads oddly).
MEM_STEP_MB = 100
TIME_STEP_MIN = 5


@dataclass(frozen=True)
class Request:
    """One job's request: ``mem_mb`` -> ``sbatch --mem``, ``runtime`` -> ``--time``."""

    mem_mb: int
    runtime: int


@dataclass(frozen=True)
class Sizing:
    """A job's request at the demo's size (``small``) and at the official MELD's (``full``)."""

    small: Request
    full: Request

    def __post_init__(self) -> None:
        for end in (self.small, self.full):
            if end.mem_mb <= 0 or end.runtime <= 0:
                raise ValueError(f"a request needs positive memory and time: {end}")

    def at(self, fraction: float) -> Request:
        """The request for data of ``fraction`` x the official MELD (linear between the ends)."""
        if fraction < 0:
            raise ValueError(f"data fraction must be >= 0, got {fraction}")
        return Request(
            mem_mb=_round_up(_between(self.small.mem_mb, self.full.mem_mb, fraction), MEM_STEP_MB),
            runtime=_round_up(
                _between(self.small.runtime, self.full.runtime, fraction), TIME_STEP_MIN
            ),
        )


def sizing(small_mb: int, small_min: int, full_mb: int, full_min: int) -> Sizing:
    """A Sizing from its two ends: MB and minutes for the demo, then for the full data."""
    return Sizing(Request(small_mb, small_min), Request(full_mb, full_min))


def fixed(mem_mb: int, runtime: int) -> Sizing:
    """A job whose needs do not grow with the data (downloads, a report page)."""
    return sizing(mem_mb, runtime, mem_mb, runtime)


def _between(small: int, full: int, fraction: float) -> float:
    return small + (full - small) * fraction


def _round_up(value: float, step: int) -> int:
    return math.ceil(value / step - 1e-9) * step


# Every rule of the workflow except the training rules (model table) and `all`.
# Demo ends: the demo's jobs run in seconds to a few minutes on 2 idle cores
# (docs/benchmarks.md, end_to_end); the times leave room for cores shared with
# other jobs, since SLURM kills a job at its --time. Full ends: cluster sizes
# for the official data (a decode job holds a shard's decoded frames; the
# alignment decodes up to three candidate clips per IFEED image).
RULES: dict[str, Sizing] = {
    # acquire: network-bound, as long whatever the config
    "download_meld": fixed(500, 720),
    "download_meld_annotations": fixed(500, 10),
    "download_ifeed": fixed(500, 120),
    "download_ifeed_record": fixed(500, 240),
    "synth_demo": fixed(2000, 30),
    "unpack_meld": sizing(1000, 20, 1000, 240),
    "unpack_ifeed": sizing(1000, 20, 1000, 60),
    # ingest
    "meld_index": sizing(1000, 20, 2000, 30),
    "meld_text": sizing(1000, 20, 1000, 20),
    "decode_meld": sizing(1500, 30, 8000, 240),
    "meld_faces": sizing(1500, 30, 8000, 240),
    "meld_manifest": sizing(1000, 20, 2000, 20),
    "ifeed_shards": sizing(1000, 20, 4000, 60),
    "ifeed_align": sizing(1500, 30, 6000, 480),
    "ifeed_alignment": sizing(1000, 20, 1000, 20),
    "ifeed_leakage": sizing(1000, 20, 1000, 20),
    "ifeed_references": sizing(1000, 20, 1000, 20),
    # models (training rules: the model table), ensembles, transfer
    "ensemble": sizing(1000, 20, 2000, 30),
    "transfer": sizing(3000, 60, 16000, 480),
    # tables, figures, report
    "benchmark_table": sizing(1000, 20, 2000, 20),
    "character_table": sizing(1000, 20, 2000, 20),
    "transfer_table": sizing(1000, 20, 2000, 20),
    "speaker_faces": sizing(1000, 20, 2000, 20),
    "speakers_table": sizing(1000, 20, 2000, 20),
    "confusion_figure": fixed(1000, 10),
    "training_figure": fixed(1000, 10),
    "transfer_heatmap": fixed(1000, 10),
    "character_figure": fixed(1000, 10),
    "report_html": fixed(2000, 30),
}


def meld_utterances(config: Mapping[str, Any]) -> int:
    """MELD utterances the config runs on: the demo generator's count, else the official MELD's."""
    synth = config.get("synth") or {}
    if synth.get("enabled", False):
        counts = synth.get("utterances") or {}
        total = sum(int(n) for n in counts.values())
        if total <= 0:
            raise ValueError(f"synth.utterances must count some utterances, got {counts}")
        return total
    return FULL_MELD_UTTERANCES


def data_fraction(config: Mapping[str, Any]) -> float:
    """The config's data size as a share of the official MELD (IFEED follows MELD's:
    its images are cut from MELD clips, in the demo as in the real data)."""
    return meld_utterances(config) / FULL_MELD_UTTERANCES


def job_resources(
    rule: str,
    config: Mapping[str, Any],
    *,
    model: Sizing | None = None,
    section: Mapping[str, Any] | None = None,
) -> Request:
    """Memory and time of one job of ``rule`` under ``config``.

    ``model``: the Sizing of a training job's model (the model table's); other
    rules take theirs from ``RULES``. ``section``: the job's model or ensemble
    member section, whose ``mem_mb``/``runtime`` replace the computed value.
    """
    if model is None:
        if rule not in RULES:
            raise KeyError(f"no sizing for rule {rule!r}: add it to crossemotion.resources.RULES")
        model = RULES[rule]
    request = model.at(data_fraction(config))
    section = section or {}
    return Request(
        mem_mb=int(section.get("mem_mb") or request.mem_mb),
        runtime=int(section.get("runtime") or request.runtime),
    )
