"""Run one paper reproduction and write results.json (+ figures) to results/<slug>/ or --out."""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

# Every folder with a run.py is a reproduction.
SLUGS = tuple(sorted(
    p.parent.name for p in pathlib.Path(__file__).parent.glob("*/run.py")
))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m paper_reproductions")
    p.add_argument("slug", choices=SLUGS)
    p.add_argument("--quick", action="store_true", help="small settings, under a minute")
    p.add_argument("--out", default=None, help="output directory (default results/<slug>)")
    p.add_argument("--part", default=None, help="run one part of a multi-part reproduction")
    args = p.parse_args(argv)
    run = importlib.import_module(f"paper_reproductions.{args.slug}.run")
    out = args.out or f"results/{args.slug}"
    result = run.main(quick=args.quick, out=out, part=args.part)
    print(f"verdict: {result['verdict']}  ->  {out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
