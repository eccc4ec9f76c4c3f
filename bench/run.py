"""`make bench`: run every benchmark, write results/bench/*.json and docs/benchmarks.md.

Each benchmark module exposes ``run() -> dict``; a failing benchmark is
recorded with its error and the others still run, so one broken part does not
hide the rest of the picture. The summary is rendered from the JSON files.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback

from bench.common import RESULTS, ROOT, write_result

BENCHMARKS = [
    "decode", "loader", "workflow", "inference", "memory", "api", "faces", "speakers",
    "end_to_end", "unpack",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help=f"subset of {BENCHMARKS}")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or BENCHMARKS:
        print(f"== bench {name}", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            module.run()
        except Exception as exc:
            failed.append(name)
            traceback.print_exc()
            write_result(name, {"error": f"{type(exc).__name__}: {exc}"})
    from bench.summary import render

    (ROOT / "docs" / "benchmarks.md").write_text(render(RESULTS))
    print(json.dumps({"failed": failed}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
