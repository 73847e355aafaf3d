"""Command line for datasets: ``python -m minisketch.data info|download|convert``.

    python -m minisketch.data info ../shared/data/aaron_sheep.npz --json
    python -m minisketch.data download cat "sea turtle" --format npz
    python -m minisketch.data convert cat.ndjson cat.npz --epsilon 2.0 --max-seq-len 250

Exit codes follow the CLI contract: 0 success, 2 usage error (argparse), 1 bad input with one
``error: ...`` line on stderr (``--debug`` shows the traceback); no partial output file is ever
left behind (downloads and converted files are written to a temporary name and moved into place).
"""
from __future__ import annotations

import argparse
import json
import sys

from .cli import ArgumentParser
from .errors import run_cli

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
        "SOURCE is a sketch-rnn .npz, a QuickDraw .ndjson, a QuickDraw class name "
        "(downloaded once into the cache) or builtin:shapes.",
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
                      help="RDP epsilon for .ndjson sources (default 2.0; 0 = off)")
    info.add_argument("--seed", type=int, default=0, metavar="S",
                      help="split seed for .ndjson sources (default 0)")

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

    cv = sub.add_parser("convert", help="QuickDraw .ndjson -> sketch-rnn .npz",
                        description="Convert QuickDraw drawings (simplified or raw .ndjson) to "
                        "a sketch-rnn .npz with train/valid/test splits (90/5/5 percent, shuffled by "
                        "--seed). Raw drawings are scaled to 0..255 first. The output is written "
                        "atomically.")
    cv.add_argument("input", metavar="IN.ndjson")
    cv.add_argument("output", metavar="OUT.npz")
    cv.add_argument("--epsilon", type=_non_negative_float, default=2.0, metavar="E",
                    help="RDP simplification epsilon in pixels (default 2.0; 0 = off)")
    cv.add_argument("--max-seq-len", type=_positive_int, default=None, metavar="N",
                    help="drop drawings with more than N points (default: keep all)")
    cv.add_argument("--seed", type=int, default=0, metavar="S", help="split seed (default 0)")
    return parser


def _info(args) -> int:
    from .datasets import load_dataset

    ds = load_dataset(args.sources if len(args.sources) > 1 else args.sources[0],
                      max_seq_len=args.max_seq_len, cache_dir=args.cache_dir,
                      base_url=args.base_url, epsilon=args.epsilon, seed=args.seed)
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
    return 0


def _download(args) -> int:
    from .quickdraw import download

    for name in args.classes:
        path = download(name, cache_dir=args.cache_dir, base_url=args.base_url, fmt=args.format)
        print(path)
    return 0


def _convert(args) -> int:
    from .quickdraw import convert_ndjson

    summary = convert_ndjson(args.input, args.output, epsilon=args.epsilon,
                             max_seq_len=args.max_seq_len, seed=args.seed)
    s = summary["splits"]
    print(f"wrote {summary['path']}: train {s['train']}, valid {s['valid']}, test {s['test']}; "
          f"longest {summary['max_seq_len']} points; dropped {summary['dropped']}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return {"info": _info, "download": _download, "convert": _convert}[args.command](args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
