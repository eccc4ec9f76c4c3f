"""The `crossemotion` command: one subcommand per module, imported lazily.

Each module in COMMANDS defines ``add_arguments(parser)`` and ``run(args) -> int``
and keeps heavy imports (torch, transformers) inside its functions so that
``crossemotion --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("crossemotion.synth.cli", "generate the demo MELD/IFEED archives"),
    "serve": ("crossemotion.serving.cli", "serve the models over HTTP (API + demo at /ui)"),
    "demo-ui": ("crossemotion.serving.ui_cli", "serve the Gradio demo alone"),
    "predict": ("crossemotion.predict_cli", "predict emotions with a trained model"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossemotion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
