"""`crossemotion demo-ui`: the Gradio demo alone, served by uvicorn at /."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default=os.environ.get("CROSSEMOTION_MODELS", "results/models"),
        help="folder of {model}/{dataset}/model.pt (default results/models)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import uvicorn

    from crossemotion.logs import setup_logging
    from crossemotion.serving.settings import settings_from_env
    from crossemotion.serving.ui import create_ui_app

    setup_logging()
    app = create_ui_app(settings=settings_from_env(models_dir=Path(args.models)))
    # Gradio's launch() is not used: it would offer share links and check for updates.
    uvicorn.run(app, host=args.host, port=args.port, server_header=False)
    return 0
