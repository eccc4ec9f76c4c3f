"""Figures for the report: confusion matrices, transfer heat map, per-character bars,
training curves. matplotlib with the Agg backend; PNG written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from crossemotion.io import atomic_path
from crossemotion.labels import CHARACTERS, classes_containing

DEMO_NOTE = "DEMO DATA (generated)"


def _save(fig: plt.Figure, target: str | Path) -> None:
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def _stamp(fig: plt.Figure, demo: bool) -> None:
    if demo:
        fig.text(0.99, 0.005, DEMO_NOTE, ha="right", va="bottom", fontsize=7, color="#b00")


def confusion_counts(
    labels: pd.Series, predictions: pd.Series, classes: Sequence[str] | None = None
) -> np.ndarray:
    """KxK counts, rows = true class, columns = predicted, in the task's class order.

    ``classes`` defaults to the task class list holding every name (7 emotions
    or 3 sentiments).
    """
    from sklearn.metrics import confusion_matrix

    if classes is None:
        classes = classes_containing([*labels, *predictions])
    return confusion_matrix(list(labels), list(predictions), labels=list(classes))


def confusion_figure(
    frame: pd.DataFrame, target: str | Path, title: str, demo: bool = False
) -> np.ndarray:
    """Row-normalised confusion matrix annotated with counts; returns the counts.

    The classes are those the predictions declare (``p_{class}`` columns).
    """
    from crossemotion.reporting.scores import prediction_classes

    classes = prediction_classes(list(frame.columns)) or classes_containing(
        [*frame["label"], *frame["prediction"]]
    )
    counts = confusion_counts(frame["label"], frame["prediction"], classes)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            if counts[i, j]:
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_title(f"{title} (n={int(counts.sum())})")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
    _stamp(fig, demo)
    _save(fig, target)
    return counts


def transfer_heatmap(
    transfer: pd.DataFrame, target: str | Path, demo: bool = False
) -> pd.DataFrame:
    """Weighted F1 per direction (rows) and mode (columns) at each target's main level."""
    main = transfer[
        ((transfer["target"] == "meld") & (transfer["level"] == "utterance"))
        | ((transfer["target"] != "meld") & (transfer["level"] == "image"))
    ].copy()
    main["direction"] = main["source"] + " → " + main["target"]
    grid = main.pivot_table(
        index="direction", columns="mode", values="weighted_f1", aggfunc="first"
    )
    order = ["zero_shot", *sorted(c for c in grid.columns if c.startswith("finetune_"))]
    order += [c for c in grid.columns if c not in order]
    grid = grid[[c for c in order if c in grid.columns]]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * max(len(grid.columns), 1), 1.4 + 0.7 * len(grid)))
    values = grid.to_numpy(dtype=float) if grid.size else np.zeros((0, 0))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(grid.columns)), list(grid.columns), rotation=30, ha="right")
    ax.set_yticks(range(len(grid.index)), list(grid.index))
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isnan(values[i, j]):
                color = "black" if values[i, j] > 0.6 else "white"
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", color=color)
    ax.set_title("transfer: weighted F1 (MELD per utterance, IFEED per image)")
    fig.colorbar(image, ax=ax, fraction=0.046, label="weighted F1")
    _stamp(fig, demo)
    _save(fig, target)
    return grid


def character_bars(characters: pd.DataFrame, target: str | Path, demo: bool = False) -> None:
    """Grouped bars: weighted F1 per character, one bar per trained model × dataset."""
    trained = characters[characters["mode"] == "trained"]
    groups = list(dict.fromkeys(zip(trained["model"], trained["dataset"], strict=True)))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(CHARACTERS)), 4.2))
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(CHARACTERS))
    for k, (model, dataset) in enumerate(groups):
        part = trained[(trained["model"] == model) & (trained["dataset"] == dataset)]
        values = (
            part.set_index("character")["weighted_f1"]
            .reindex(list(CHARACTERS))
            .astype(float)
            .fillna(0.0)
        )
        ax.bar(
            x + (k - (len(groups) - 1) / 2) * width,
            values.to_numpy(),
            width,
            label=f"{model} / {dataset}",
        )
    ax.set_xticks(x, list(CHARACTERS))
    ax.set_ylim(0, 1)
    ax.set_ylabel("weighted F1 (test)")
    ax.set_title("weighted F1 per character (absent characters shown as 0)")
    if groups:
        ax.legend(fontsize=7, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    _stamp(fig, demo)
    _save(fig, target)


def training_curves(log: pd.DataFrame, target: str | Path, title: str, demo: bool = False) -> None:
    """Training loss and dev scores per epoch from a train_log.csv; an ensemble's log
    (a ``member`` column) gets one set of lines per member."""
    fig, loss_ax = plt.subplots(figsize=(6.0, 3.6))
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("train loss", color="tab:red")
    score_ax = loss_ax.twinx()
    members = log.groupby("member", sort=True) if "member" in log.columns else [(None, log)]
    for member, rows in members:
        suffix = "" if member is None else f" (member {member})"
        if "epoch" in rows.columns and "train_loss" in rows.columns:
            loss_ax.plot(rows["epoch"], rows["train_loss"], "o-", color="tab:red",
                         alpha=1.0 if not member else 0.5, label=f"train loss{suffix}")  # fmt: skip
        for column, style in (("dev_accuracy", "s--"), ("dev_weighted_f1", "^-")):
            if column in rows.columns:
                score_ax.plot(rows["epoch"], rows[column], style,
                              label=column.replace("_", " ") + suffix)  # fmt: skip
    score_ax.set_ylim(0, 1)
    score_ax.set_ylabel("dev score")
    handles = loss_ax.get_legend_handles_labels()[0] + score_ax.get_legend_handles_labels()[0]
    if handles:
        loss_ax.legend(handles=handles, fontsize=7, loc="lower left")
    loss_ax.set_title(title)
    _stamp(fig, demo)
    _save(fig, target)


def figure_meta(path: str | Path) -> Mapping[str, Any]:
    """Pixel size of a written PNG (used by tests and logs)."""
    from PIL import Image

    with Image.open(path) as im:
        return {"width": im.width, "height": im.height, "format": im.format}
