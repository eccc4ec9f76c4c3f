"""`crossemotion synth`: write the demo MELD/IFEED archives."""

from __future__ import annotations

import argparse
import os

DEFAULT_CONFIG = "config/demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", required=True, help="folder for MELD.Raw.tar.gz and IFEED_Base.zip"
    )
    parser.add_argument(
        "--config",
        default=None,
        help=f"config whose `synth` section sets the sizes (default {DEFAULT_CONFIG} if present)",
    )
    parser.add_argument("--seed", type=int)
    for split in ("train", "dev", "test"):
        parser.add_argument(f"--{split}", type=int, help=f"MELD {split} utterances")
    parser.add_argument("--ifeed-train", type=int, help="IFEED Training images")
    parser.add_argument("--ifeed-test", type=int, help="IFEED Testing images")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--fps", type=int)
    parser.add_argument("--face-size", type=int)
    parser.add_argument(
        "--annotations", help="real MELD csv to take utterances, labels and times from"
    )
    parser.add_argument(
        "--limit", type=int, help="with --annotations: how many csv rows (whole dialogues)"
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))


def run(args: argparse.Namespace) -> int:
    from crossemotion.config import load_config
    from crossemotion.logs import setup_logging
    from crossemotion.synth.generate import SynthSettings, generate

    logger = setup_logging()
    config_path = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    synth = load_config(config_path).get("synth", {}) if config_path else {}
    base = SynthSettings.from_config(synth)
    utterances = dict(base.utterances)
    for split in ("train", "dev", "test"):
        if getattr(args, split) is not None:
            utterances[split] = getattr(args, split)
    images = dict(base.ifeed_images)
    if args.ifeed_train is not None:
        images["train"] = args.ifeed_train
    if args.ifeed_test is not None:
        images["test"] = args.ifeed_test
    settings = SynthSettings.from_config(
        synth,
        seed=args.seed,
        utterances=utterances,
        ifeed_images=images,
        width=args.width,
        height=args.height,
        fps=args.fps,
        face_size=args.face_size,
        annotations=args.annotations,
        limit=args.limit,
        workers=args.workers,
    )
    summary = generate(args.out, settings)
    logger.info(
        "synth done in %.1f s: %s, %s",
        summary["seconds"],
        summary["meld_archive"],
        summary["ifeed_archive"],
    )
    return 0
