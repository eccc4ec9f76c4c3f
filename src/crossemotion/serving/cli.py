"""`crossemotion serve`: the HTTP API (and the Gradio demo at /ui) under uvicorn."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_server_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    """--models, --host and --port, shared by `serve` and `demo-ui`."""
    parser.add_argument(
        "--models",
        default=os.environ.get("CROSSEMOTION_MODELS", "results/models"),
        help="folder of {model}/{dataset}/model.pt (default results/models)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser, port=8000)
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes; each loads every model"
    )
    parser.add_argument("--no-ui", action="store_true", help="do not mount the Gradio demo at /ui")
    parser.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from crossemotion.logs import setup_logging

    setup_logging()
    # The factory reads its settings from the environment in every worker process.
    os.environ["CROSSEMOTION_MODELS_DIR"] = str(args.models)
    if args.no_ui:
        os.environ["CROSSEMOTION_MOUNT_UI"] = "false"
    uvicorn.run("crossemotion.serving.cli:app_from_env", factory=True, host=args.host,
                port=args.port, workers=args.workers, log_level=args.log_level,
                proxy_headers=False, server_header=False)  # fmt: skip
    return 0


def app_from_env() -> Any:
    """uvicorn factory: settings come from the environment (set by ``run``)."""
    from crossemotion.serving.app import create_app

    return create_app()
