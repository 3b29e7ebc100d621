#!/usr/bin/env python3
"""Render the JSON of an `allcores bench --json F` run as Markdown (the format of BENCHMARKS.md),
without running anything again:

    python benchmarks/render_markdown.py results.json > BENCHMARKS.md
"""
import json
import sys

from allcores_bench.report import markdown


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        sys.stdout.write(markdown(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
