"""Run Keras 3.15.1's own test files against lamina (issue 13) and report what passes and why the rest fails.

    .venv/bin/python scripts/keras_suite.py                    # the issue's modules
    .venv/bin/python scripts/keras_suite.py --only metrics     # modules or files whose name holds a word
    .venv/bin/python scripts/keras_suite.py --scope dirs       # every test file in the same Keras folders

The Keras sdist is downloaded once into ~/.cache/lamina/keras-suite (or $XDG_CACHE_HOME / $LAMINA_KERAS_SUITE_CACHE).
Prints per-file, per-module and total counts, the top failure causes and the skip reasons; writes the
whole summary as JSON (default out/keras_suite/summary.json, ignored by git). Exit status 0 unless the
harness itself fails; ``--min-pass-rate`` makes a pass rate below it an exit status of 1.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the harness lives in tests/keras_suite

from tests.keras_suite import report, runner  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scope", choices=("issue", "dirs"), default="issue")
    parser.add_argument("--only", nargs="*", help="keep modules or files whose name contains one of these words")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "out" / "keras_suite" / "summary.json")
    parser.add_argument("--top", type=int, default=40, help="how many failure causes to print")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run folder")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the whole pytest run")
    parser.add_argument("--strict-imports", action="store_true",
                        help="a Keras module lamina lacks fails its import (the whole file errors) instead of "
                             "failing only the tests that read from it")
    parser.add_argument("--min-pass-rate", type=float, default=None, help="e.g. 0.95")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments (e.g. -k name)")
    args = parser.parse_args(argv)

    try:
        summary = runner.run(args.scope, args.only, args.keep, args.timeout, args.pytest_args, args.strict_imports)
    except RuntimeError as error:  # no sdist (network) or a run that wrote no results: say so, no traceback
        print(f"keras_suite: {error}", file=sys.stderr)
        return 2
    print(report.render(summary, args.top))
    total = summary["total"]
    print(f"\nTOTAL passed {total['passed']}, failed {total['failed']}, errors {total['error']}, skipped "
          f"{total['skipped']}: pass rate {100 * summary['pass_rate']:.1f}% in {summary['seconds']['total']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_suffix(".json.partial")
    partial.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    partial.replace(args.out)  # never a half-written summary
    print(f"summary: {args.out}")
    if args.min_pass_rate is not None and summary["pass_rate"] < args.min_pass_rate:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
