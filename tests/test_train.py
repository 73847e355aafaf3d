"""Training CLI: outputs per CONTRACT, exact resume, SIGINT, non-finite loss, bad checkpoints.

Every run is a tiny model on a tiny synthetic dataset written to tmp_path, a few steps long.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minisketch import checkpoint as ckpt
from minisketch.errors import run_cli

pytest.importorskip("minisketch.model", reason="model.py not available yet")
pytest.importorskip("minisketch.datasets", reason="datasets.py not available yet")

from conftest import write_tiny_dataset  # noqa: E402
from minisketch import train  # noqa: E402

TINY = ["--enc_rnn_size", "8", "--dec_rnn_size", "16", "--z_size", "4", "--num_mixture", "3",
        "--batch_size", "8", "--samples", "4"]
LOSS_KEYS = {"recon", "offset", "pen", "kl", "loss"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A sketch-rnn style .npz: 40/10/10 random-walk sketches of 4..12 points."""
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.npz", (40, 10, 10), seed=0)


def _cli(*args, env_extra=None, timeout=120):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "minisketch.train", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def _log(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def _error_line(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    errs = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errs) == 1, r.stderr
    return errs[0]


# ----------------------------------------------------------------------------- a whole run

def test_run_writes_contract_outputs(data, tmp_path):
    out = tmp_path / "run"
    r = _ok(_cli("--data", data, "--out", out, "--steps", 6, "--eval-every", 3, *TINY))
    lines = r.stdout.splitlines()                          # the config in four lines
    assert [ln.split()[0] for ln in lines[:4]] == ["run", "data", "model", "train"], r.stdout
    assert "conditional: lstm encoder 2x8, lstm decoder 16, z 4, M 3" in lines[2]
    assert "paper preset: 6 steps of 8 sketches" in lines[3]
    assert lines[4].startswith("estimate: ") and "6 steps take about" in lines[4]
    config = json.loads((out / "config.json").read_text())
    assert config["hparams"]["dec_rnn_size"] == 16 and config["training"]["steps"] == 6
    assert config["hparams"]["max_seq_len"] == config["max_seq_len"] <= 12
    rows = _log(out)
    assert [row["step"] for row in rows] == [0, 3, 6]
    for row in rows:
        assert set(row) >= {"step", "seconds", "lr", "kl_weight", "train", "valid"}
        assert set(row["train"]) == LOSS_KEYS and set(row["valid"]) == LOSS_KEYS
        assert all(np.isfinite(list(row["valid"].values())))
    assert "test" in rows[-1] and set(rows[-1]["test"]) == LOSS_KEYS
    assert all("test" not in row for row in rows[:-1])
    assert rows[1]["lr"] == pytest.approx(1e-3 * 0.9999 ** 3 + 1e-5 * (1 - 0.9999 ** 3))
    for name in ("checkpoint.npz", "best.npz", "loss.png", "samples.svg", "samples.png"):
        assert (out / name).is_file(), name
    ck = ckpt.load_checkpoint(out / "checkpoint.npz")
    assert ck.step == 6 and int(ck.optimizer["t"]) == 6
    best = ckpt.load_checkpoint(out / "best.npz")
    best_row = min(rows, key=lambda row: row["valid"]["loss"])
    assert best.step == best_row["step"]
    model = ckpt.load_model(out)                           # folder -> best.npz
    assert model.hp.dec_rnn_size == 16 and model.scale_factor == config["scale_factor"]
    # a fresh run must not silently overwrite it
    r2 = _cli("--data", data, "--out", out, "--steps", 2, *TINY)
    assert r2.returncode == 1 and "--resume" in _error_line(r2)


def test_decoder_only_run(data, tmp_path):
    out = tmp_path / "run"
    r = _ok(_cli("--data", data, "--out", out, "--steps", 3, "--conditional", "0", *TINY))
    assert "model  decoder-only: lstm decoder 16, M 3:" in r.stdout
    rows = _log(out)
    assert [row["kl_weight"] for row in rows] == [0.0, 0.0]
    assert rows[-1]["valid"]["kl"] == 0.0
    model = ckpt.load_model(out)
    assert not model.hp.conditional and "out/W" in model.param_names


# ----------------------------------------------------------------------------- exact resume

def test_resume_is_bit_identical(data, tmp_path):
    common = ["--data", data, "--eval-every", 5, "--seed", 3, *TINY]
    _ok(_cli(*common, "--out", tmp_path / "a", "--steps", 20))
    _ok(_cli(*common, "--out", tmp_path / "b", "--steps", 10))
    r = _ok(_cli("--resume", "--out", tmp_path / "b", "--steps", 20, "--data", data))
    assert "resuming" in r.stdout
    a = ckpt.load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    b = ckpt.load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert a.step == b.step == 20
    assert sorted(a.params) == sorted(b.params)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)
    for key in ("m", "v", "t"):
        np.testing.assert_array_equal(a.optimizer[key], b.optimizer[key], err_msg=key)
    assert a.rng == b.rng
    rows_a = {row["step"]: row for row in _log(tmp_path / "a")}
    rows_b = {row["step"]: row for row in _log(tmp_path / "b")}
    assert sorted(rows_a) == sorted(rows_b) == [0, 5, 10, 15, 20]
    for step in rows_a:
        assert rows_a[step]["train"] == rows_b[step]["train"], step
        assert rows_a[step]["valid"] == rows_b[step]["valid"], step
    assert rows_a[20]["test"] == rows_b[20]["test"]


def test_different_seed_gives_different_run(data, tmp_path):
    _ok(_cli("--data", data, "--out", tmp_path / "s1", "--steps", 2, "--seed", 1, *TINY))
    _ok(_cli("--data", data, "--out", tmp_path / "s2", "--steps", 2, "--seed", 2, *TINY))
    p1 = ckpt.load_checkpoint(tmp_path / "s1" / "checkpoint.npz").params
    p2 = ckpt.load_checkpoint(tmp_path / "s2" / "checkpoint.npz").params
    assert any(not np.array_equal(p1[n], p2[n]) for n in p1)


# ----------------------------------------------------------------------------- interruptions

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_a_checkpoint_that_resumes(data, tmp_path, sig):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "minisketch.train", "--data", data, "--out", str(out),
            "--steps", "1000000", "--eval-every", "1000000", *TINY]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "samples.png").exists():     # the last output of the step-0 eval
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no evaluation within 60 s"
            time.sleep(0.05)
        time.sleep(1.0)                      # let it take some training steps
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert f"{signal.Signals(sig).name}: stopped at step" in stderr
    assert "Traceback" not in stderr and "error:" not in stderr
    ck = ckpt.load_checkpoint(out / "checkpoint.npz")
    assert ck.step > 0 and int(ck.optimizer["t"]) == ck.step
    assert ckpt.load_model(out / "checkpoint.npz").num_params > 0
    _ok(_cli("--resume", "--out", out, "--steps", ck.step + 3))
    assert ckpt.load_checkpoint(out / "checkpoint.npz").step == ck.step + 3
    assert "test" in _log(out)[-1]


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    r = _cli("--data", data, "--out", out, "--steps", 20, "--eval-every", 4, *TINY,
             env_extra={train.NAN_HOOK: "6"})
    assert r.returncode == 1, r.stderr
    line = _error_line(r)
    assert "non-finite" in line and "step 6" in line
    assert [row["step"] for row in _log(out)] == [0, 4]
    ck = ckpt.load_checkpoint(out / "checkpoint.npz")
    assert ck.step == 4
    assert all(np.isfinite(a).all() for a in ck.params.values())
    model = ckpt.load_model(out / "checkpoint.npz")
    assert np.isfinite(model.flat).all()
    # and it resumes (without the poison) to the end
    _ok(_cli("--resume", "--out", out, "--steps", 8))


# ----------------------------------------------------------------------------- bad input

def test_truncated_checkpoint_resume_is_an_error(data, tmp_path):
    out = tmp_path / "run"
    _ok(_cli("--data", data, "--out", out, "--steps", 2, *TINY))
    raw = (out / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(raw[: len(raw) // 2])
    r = _cli("--resume", "--out", out, "--steps", 4)
    assert r.returncode == 1 and "corrupt or truncated" in _error_line(r)


def test_bad_minisketch_blas_is_one_error_line_before_any_folder(data, tmp_path):
    out = tmp_path / "run"
    r = _cli("--data", data, "--out", out, "--steps", 2, "--backend", "numba", *TINY,
             env_extra={"MINISKETCH_BLAS": "fastest"})
    assert r.returncode == 1
    assert "MINISKETCH_BLAS must be one of auto, numpy, mkl" in _error_line(r)
    assert "Traceback" not in r.stderr and not out.exists()


def test_mismatched_checkpoint_resume_is_an_error(data, tmp_path):
    out = tmp_path / "run"
    _ok(_cli("--data", data, "--out", out, "--steps", 2, *TINY))
    # parameters that do not fit the config they are stored with
    ck = ckpt.load_checkpoint(out / "checkpoint.npz")
    config = dict(ck.config, hparams=dict(ck.config["hparams"], dec_rnn_size=12))
    ckpt.save_checkpoint(out / "checkpoint.npz", ck.params, config, step=ck.step,
                         optimizer=ck.optimizer, rng=ck.rng, train_state=ck.train_state)
    r = _cli("--resume", "--out", out, "--steps", 4)
    assert r.returncode == 1 and "does not match" in _error_line(r)


def test_resume_with_other_hyperparameters_is_an_error(data, tmp_path):
    out = tmp_path / "run"
    _ok(_cli("--data", data, "--out", out, "--steps", 2, *TINY))
    r = _cli("--resume", "--out", out, "--steps", 4, "--dec_rnn_size", "32")
    assert r.returncode == 1 and "--dec_rnn_size 32 (the run has 16)" in _error_line(r)
    r = _cli("--resume", "--out", tmp_path / "nothing", "--steps", 4)
    assert r.returncode == 1 and "no checkpoint" in _error_line(r)


@pytest.mark.parametrize("argv", [["--bogus", "1"], ["--steps", "ten"], ["--steps", "-1"],
                                  ["--eval-every", "0"], ["--dec_model", "gru"],
                                  ["--backend", "tpu"], ["--use_recurrent_dropout", "maybe"],
                                  ["--preset", "huge"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(train.main, argv)
    assert e.value.code == 2


def test_unknown_option_exit_2_from_the_command_line():
    r = _cli("--no-such-option")
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and r.stdout == "" and len(lines) == 2, r.stderr
    assert lines[0] == "usage: python -m minisketch.train [options]"
    assert lines[1].startswith("error: unrecognized argument: --no-such-option")


# ----------------------------------------------------------------------------- pieces

def test_presets_and_overrides():
    p = train.build_parser()
    hp, opts = train.resolve_config(p.parse_args([]))
    assert opts["preset"] == "quick" and opts["data"] == ["builtin:shapes"]
    assert hp.dec_rnn_size == train.PRESETS["quick"]["hparams"]["dec_rnn_size"]
    hp, opts = train.resolve_config(p.parse_args(["--data", "x.npz", "--z_size", "7"]))
    assert opts["preset"] == "paper" and hp.dec_rnn_size == 512 and hp.z_size == 7
    hp, opts = train.resolve_config(p.parse_args(["--preset", "quick", "--dec_rnn_size", "64",
                                                  "--steps", "5", "--backend", "numba"]))
    assert hp.dec_rnn_size == 64 and opts["steps"] == 5 and opts["backend"] == "numba"
    assert hp.z_size == train.PRESETS["quick"]["hparams"]["z_size"]


def test_eta_counts_steps_and_evaluations_apart():
    eta = train.Eta(0.5, steps=100, eval_every=30, settle=20)
    assert eta.evals_left(0) == 4 and eta.evals_left(30) == 3 and eta.evals_left(95) == 1
    assert eta.left(0) == pytest.approx(50.0)
    eta.eval_done(2.0)
    assert eta.left(0) == pytest.approx(50.0 + 4 * 2.0)
    for _ in range(19):
        eta.step_done(0.1)
    assert eta.step_seconds == 0.5                   # the probe until 20 steps are timed
    eta.step_done(0.1)
    assert eta.step_seconds == pytest.approx(0.1)
    assert eta.left(90) == pytest.approx(10 * 0.1 + 1 * 2.0)
    eta = train.Eta(0.5, steps=90, eval_every=30)
    assert eta.evals_left(0) == 3 and eta.evals_left(90) == 0


def test_duration():
    assert [train.duration(s) for s in (0.4, 42, 245, 3 * 3600 + 12 * 60, 2 * 86400 + 4 * 3600)] \
        == ["0s", "42s", "4m05s", "3h12m", "2d04h"]


def test_warm_up_and_probe_change_nothing(data, tmp_path):
    """A run's first step after warm_up and probe_step_seconds is the step of a run without."""
    argv = ["--data", data, "--seed", "5", *TINY]
    runs = []
    for k in range(2):
        args = train.build_parser(argv).parse_args(argv + ["--out", str(tmp_path / str(k))])
        run = train.setup_run(args)
        if k == 1:
            flat = run.model.flat.copy()
            train.warm_up(run)
            assert train.probe_step_seconds(run) > 0
            np.testing.assert_array_equal(run.model.flat, flat)
        losses, grads = run.model.loss_and_grad(run.batches.next_batch(), 0)
        runs.append((float(losses["loss"]), run.model.flat_grad.copy(),
                     run.batches.get_state()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]


def test_a_long_run_says_so_before_it_starts(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train, "LONG_RUN_SECONDS", 0.0)
    assert run_cli(train.main, ["--data", data, "--out", str(tmp_path / "r"), "--steps", "2",
                                *TINY]) == 0
    out = capsys.readouterr().out
    assert "s per step measured here; 2 steps take about" in out
    assert "this is a long run: --steps N trains fewer steps" in out
    assert "--backend numba is faster on a CPU" in out      # the paper preset runs numpy


def test_evaluate_equals_whole_set_as_one_batch(data):
    """Sketch-weighted batch means over an in-order pass = the whole split as one batch."""
    from minisketch.datasets import load_dataset
    from minisketch.hparams import HParams
    from minisketch.model import SketchRNN
    from minisketch.strokes import make_batch
    ds = load_dataset(data)
    whole_batch = make_batch(ds.valid, ds.max_seq_len, ds.scale_factor)
    for conditional, keys in ((False, ("recon", "offset", "pen", "loss")), (True, ("kl",))):
        # decoder-only: deterministic; conditional: z noise differs per batch, the KL does not
        hp = HParams(enc_rnn_size=8, dec_rnn_size=16, z_size=4, num_mixture=3, batch_size=8,
                     max_seq_len=ds.max_seq_len, conditional=conditional)
        model = SketchRNN(hp, backend="numpy", dtype="float64", seed=0,
                          scale_factor=ds.scale_factor)
        got = train.evaluate(model, ds.valid, 3, ds.max_seq_len, ds.scale_factor, step=0)
        whole = model.evaluate(whole_batch, step=0)
        for k in keys:
            assert got[k] == pytest.approx(float(whole[k]), rel=1e-10, abs=1e-12), k
