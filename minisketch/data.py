"""Command line for datasets: ``python -m minisketch.data info|download|convert``.

    python -m minisketch.data info ../shared/data/aaron_sheep.npz --json
    python -m minisketch.data download cat "sea turtle" --format npz
    python -m minisketch.data convert cat.ndjson cat.npz --epsilon 2.0 --max-seq-len 250
    python -m minisketch.data convert drawings/ mine.npz     # drawings/cat/*.svg is class cat

Exit codes follow the CLI contract: 0 success, 2 usage error (argparse), 1 bad input with one
``error: ...`` line on stderr (``--debug`` shows the traceback); no partial output file is ever
left behind (downloads and converted files are written to a temporary name and moved into place).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .cli import ArgumentParser
from .errors import MinisketchError, run_cli

PROG = "python -m minisketch.data"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=PROG, description="Inspect, download and convert sketch datasets. "
        "SOURCE is a sketch-rnn .npz, a QuickDraw .ndjson, an .svg file or a folder of them "
        "(one class per subfolder), a QuickDraw class name (downloaded once into the cache) "
        "or builtin:shapes.",
        epilog="Add --debug to any command to see the traceback of an error.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="split sizes, N_max, scale factor, sketches dropped",
                          description="Load SOURCE(s) as training would and print split sizes, "
                          "N_max (max_seq_len), the normalizing scale factor and how many "
                          "sketches were dropped. Several SOURCEs are concatenated split by split.")
    info.add_argument("sources", nargs="+", metavar="SOURCE")
    info.add_argument("--json", action="store_true",
                      help="print one JSON object with splits, max_seq_len, scale_factor, "
                      "dropped")
    info.add_argument("--max-seq-len", type=_positive_int, default=None, metavar="N",
                      help="drop sketches longer than N points (default: keep all)")
    info.add_argument("--cache-dir", default=None, metavar="DIR",
                      help="download cache (default $MINISKETCH_CACHE or ~/.cache/minisketch)")
    info.add_argument("--base-url", default=None, metavar="URL",
                      help="server folder for class downloads")
    info.add_argument("--epsilon", type=_non_negative_float, default=2.0, metavar="E",
                      help="RDP epsilon for .ndjson and .svg sources (default 2.0; 0 = off)")
    info.add_argument("--seed", type=int, default=0, metavar="S",
                      help="split seed for .ndjson and .svg sources (default 0)")

    dl = sub.add_parser("download", help="fetch QuickDraw classes into the cache",
                        description="Download QuickDraw classes (sketch-rnn .npz sets, or "
                        "simplified .ndjson drawings) into the cache, once; prints each "
                        "file's path. Needs the internet.")
    dl.add_argument("classes", nargs="+", metavar="CLASS",
                    help="QuickDraw class name, e.g. cat or 'sea turtle'")
    dl.add_argument("--cache-dir", default=None, metavar="DIR",
                    help="cache folder (default $MINISKETCH_CACHE or ~/.cache/minisketch)")
    dl.add_argument("--base-url", default=None, metavar="URL",
                    help="server folder (default: the QuickDraw sketchrnn bucket for npz, "
                    "full/simplified for ndjson)")
    dl.add_argument("--format", choices=("npz", "ndjson"), default="npz",
                    help="npz: sketch-rnn train/valid/test set (default); ndjson: drawings")

    cv = sub.add_parser("convert", help="QuickDraw .ndjson or SVG drawings -> sketch-rnn .npz",
                        description="Convert QuickDraw drawings (one simplified or raw .ndjson) "
                        "or SVG drawings (.svg files and folders of them, searched recursively; "
                        "each subfolder is a class) to a sketch-rnn .npz with train/valid/test "
                        "splits (90/5/5 percent, shuffled by --seed; SVG classes each split on "
                        "their own and labelled). Raw drawings and SVGs are scaled so the longer "
                        "side is 255; SVGs are flattened and resampled at 1 px first (see "
                        "docs/svg.md). Unusable SVG files are left out and named. The output is "
                        "written atomically.")
    cv.add_argument("inputs", nargs="+", metavar="INPUT",
                    help="one .ndjson file, or .svg files and folders")
    cv.add_argument("output", metavar="OUT.npz")
    cv.add_argument("--epsilon", type=_non_negative_float, default=2.0, metavar="E",
                    help="RDP simplification epsilon in pixels (default 2.0; 0 = off)")
    cv.add_argument("--max-seq-len", type=_positive_int, default=None, metavar="N",
                    help="drop drawings with more than N points (default: keep all)")
    cv.add_argument("--seed", type=int, default=0, metavar="S", help="split seed (default 0)")
    cv.add_argument("--strict", action="store_true",
                    help="SVG: fail (and write nothing) if any file or class is left out")
    return parser


def _info(args) -> int:
    from .datasets import load_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(args.sources if len(args.sources) > 1 else args.sources[0],
                          max_seq_len=args.max_seq_len, cache_dir=args.cache_dir,
                          base_url=args.base_url, epsilon=args.epsilon, seed=args.seed)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    info = ds.info()
    if args.json:
        print(json.dumps(info))
    else:
        s = info["splits"]
        print(f"source:       {info['name']}")
        print(f"splits:       train {s['train']}, valid {s['valid']}, test {s['test']}")
        print(f"max_seq_len:  {info['max_seq_len']}")
        print(f"scale_factor: {info['scale_factor']:.6f}")
        print(f"dropped:      {info['dropped']}")
        print(f"classes:      {', '.join(info['classes'])}")
        for name, c in info["class_counts"].items():
            print(f"  {name}: {sum(c.values())} (train {c['train']}, valid {c['valid']}, "
                  f"test {c['test']})")
    return 0


def _download(args) -> int:
    from .quickdraw import download

    for name in args.classes:
        path = download(name, cache_dir=args.cache_dir, base_url=args.base_url, fmt=args.format)
        print(path)
    return 0


def _convert(args) -> int:
    from .quickdraw import convert_ndjson
    from .svg import convert_svg, summary_line

    other = [p for p in args.inputs if not p.lower().endswith(".svg") and not Path(p).is_dir()]
    if other and len(args.inputs) > 1:
        raise MinisketchError(f"convert takes one .ndjson file, or .svg files and folders; "
                              f"{other[0]} is neither")
    if other:
        summary = convert_ndjson(other[0], args.output, epsilon=args.epsilon,
                                 max_seq_len=args.max_seq_len, seed=args.seed)
    else:
        summary = convert_svg(args.inputs, args.output, epsilon=args.epsilon,
                              max_seq_len=args.max_seq_len, seed=args.seed, strict=args.strict,
                              report=lambda line: print(line, file=sys.stderr))
        print(summary_line(summary))
    s = summary["splits"]
    print(f"wrote {summary['path']}: train {s['train']}, valid {s['valid']}, test {s['test']}; "
          f"longest {summary['max_seq_len']} points; dropped {summary['dropped']}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return {"info": _info, "download": _download, "convert": _convert}[args.command](args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
