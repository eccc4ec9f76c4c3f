"""`crossemotion demo-ui`: the Gradio demo alone, served by uvicorn at /."""

from __future__ import annotations

import argparse

from crossemotion.serving.cli import add_server_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser, port=7860)


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
