"""Export a decoder-only LSTM model to the magenta.js ``.gen.json`` format (SPEC section 5).

    python -m minisketch.export --model run/ --out sheep.gen.json [--name sheep]

magenta.js runs exactly one kind of sketch-rnn in the browser: a decoder-only (unconditional,
"mode 2") model with a plain LSTM decoder and M = 20 mixture components (hard-coded there). Any
other model is refused with the reason. Weights are stored as int16 on a grid of 10/32767 that
saturates at +-10 (see :mod:`minisketch.magenta`); weights beyond +-10 are clipped, with a warning
that says how many there were and the largest magnitude.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .cli import ArgumentParser
from .errors import MinisketchError, ModelError, run_cli
from .magenta import ARRAY_NAMES, MAGENTA_NUM_MIXTURE, QUANT_RANGE, QuantizationReport, \
    write_gen_json


def export_problems(model) -> list[str]:
    """Why ``model`` cannot run in magenta.js (an empty list when it can)."""
    hp = model.hp
    problems = []
    if hp.conditional:
        problems.append("it is a conditional model (it has an encoder and a latent z); "
                        "magenta.js .gen.json files hold decoder-only models only (train with "
                        "--conditional 0)")
    if hp.dec_model != "lstm":
        problems.append(f"its decoder is a {hp.dec_model} cell; magenta.js runs only the plain "
                        f"LSTM decoder (--dec_model lstm)")
    if int(hp.num_mixture) != MAGENTA_NUM_MIXTURE:
        problems.append(f"it has num_mixture = {hp.num_mixture}; magenta.js hard-codes "
                        f"M = {MAGENTA_NUM_MIXTURE} mixture components")
    return problems


def clip_warning(report: QuantizationReport) -> str:
    """The warning text for weights that were clipped to +-10."""
    return (f"{report.n_clipped} of {report.n_weights} weights are beyond +-{QUANT_RANGE:g} and "
            f"were clipped to +-{QUANT_RANGE:g} (largest |w| = {report.max_abs:.6g}); "
            f"the exported model differs from this one there")


def default_name(path) -> str:
    """``sheep`` for ``.../sheep.gen.json`` (or ``sheep.json``)."""
    name = Path(path).name
    for suffix in (".gen.json", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def export_gen_json(model, path, name=None, warn=True) -> QuantizationReport:
    """Write ``model`` (decoder-only LSTM, M = 20) to ``path`` as a magenta.js ``.gen.json``.

    info: ``name`` (default: the file name without ``.gen.json``), ``scale_factor`` (the model's,
    data units), ``max_seq_len`` (the model's N_max), ``mode`` 2 and ``version`` 6. Raises
    :class:`ModelError` naming every reason when the model cannot be exported. With ``warn``, a
    :class:`UserWarning` reports weights clipped to +-10. Returns the quantization report.
    """
    problems = export_problems(model)
    if problems:
        raise ModelError("cannot export to magenta.js: " + "; ".join(problems))
    state = model.state_dict()
    if set(state) != set(ARRAY_NAMES):
        raise ModelError(f"cannot export to magenta.js: a decoder-only LSTM model has exactly "
                         f"the parameters {', '.join(ARRAY_NAMES)}; this one has "
                         f"{', '.join(sorted(state))}")
    info = {"name": default_name(path) if name is None else str(name),
            "scale_factor": float(model.scale_factor),
            "max_seq_len": int(model.hp.max_seq_len)}
    report = write_gen_json(path, {k: state[k] for k in ARRAY_NAMES}, info)
    if warn and report.n_clipped:
        warnings.warn(clip_warning(report), UserWarning, stacklevel=2)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m minisketch.export",
        description="Write a decoder-only LSTM sketch-rnn model (M = 20) in the magenta.js "
                    ".gen.json format, so it runs in the browser with @magenta/sketch. Weights "
                    "are quantized to int16 steps of 10/32767 and clipped to +-10 (a warning "
                    "says how many were clipped).")
    p.add_argument("--model", required=True, metavar="PATH",
                   help="training output folder (best.npz, else checkpoint.npz), .npz model or "
                        "checkpoint, or a .gen.json file")
    p.add_argument("--out", required=True, metavar="FILE.gen.json",
                   help="file to write (must end in .json; .gen.json is the usual name)")
    p.add_argument("--name", default=None,
                   help="model name stored in the file (default: FILE without .gen.json)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if not out.name.endswith(".json"):
        raise MinisketchError(f"--out {args.out}: a magenta.js model file must end in .json "
                              f"(e.g. sheep.gen.json)")
    if not out.parent.is_dir() and str(out.parent) not in ("", "."):
        raise MinisketchError(f"--out {args.out}: the folder {out.parent} does not exist")
    from .checkpoint import load_model
    model = load_model(args.model, backend="numpy")
    report = export_gen_json(model, out, name=args.name, warn=False)
    if report.n_clipped:
        print(f"warning: {clip_warning(report)}", file=sys.stderr)
    H, M = int(model.hp.dec_rnn_size), int(model.hp.num_mixture)
    print(f"wrote {out} (decoder-only LSTM, {H} units, M = {M}, {report.n_weights} weights, "
          f"largest quantization error {report.max_error:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
