"""The run folder's lifecycle (issue 19 items 9-16): a crash, a kill, a double Ctrl-C, a full
disk or a signal at a chosen point leaves a folder that resumes (or starts again) to exactly
the uninterrupted run, log included; the folder is locked, never shared with foreign files,
and a run that fails before its first checkpoint leaves nothing behind.

Faults are injected deterministically with ``MINISKETCH_FAULT=ACTION@POINT@STEP`` (faults.py):
SIGKILL in a subprocess, the others in this process through ``run_cli``.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tiny_dataset
from minisketch import checkpoint as ckpt
from minisketch import faults, train
from minisketch.errors import run_cli

TINY = ["--enc_rnn_size", "8", "--dec_rnn_size", "16", "--z_size", "4", "--num_mixture", "3",
        "--batch_size", "8", "--samples", "2", "--steps", "4", "--eval-every", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.npz", (40, 10, 10), seed=1)


def _argv(data, out, *extra):
    return ["--data", data, "--out", str(out), *TINY, *extra]


def _cli(argv, capsys, fault=None, monkeypatch=None):
    """run_cli(train.main) in this process, with an optional fault; (rc, stdout, stderr)."""
    if fault:
        monkeypatch.setenv(faults.ENV, fault)
        monkeypatch.setattr(faults, "_fired", False)
    try:
        rc = run_cli(train.main, [str(a) for a in argv])
    finally:
        if fault:
            monkeypatch.delenv(faults.ENV)
    out, err = capsys.readouterr()
    return rc, out, err


def _subprocess(argv, fault=None):
    env = dict(os.environ)
    if fault:
        env[faults.ENV] = fault
    return subprocess.run([sys.executable, "-m", "minisketch.train", *map(str, argv)],
                          capture_output=True, text=True, timeout=180, env=env)


def _rows(out):
    """log.jsonl without the wall-clock field."""
    rows = [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _final(out):
    ck = ckpt.load_checkpoint(Path(out) / "checkpoint.npz")
    best = ckpt.load_checkpoint(Path(out) / "best.npz")
    return ck, best


def _one_error(err):
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The uninterrupted run: its log rows and final checkpoint."""
    out = tmp_path_factory.mktemp("ref") / "run"
    r = _subprocess(_argv(data, out))
    assert r.returncode == 0, r.stderr
    return _rows(out), *_final(out)


def _assert_same_run(out, reference):
    rows, ck, best = reference
    assert _rows(out) == rows
    got, got_best = _final(out)
    assert got.step == ck.step and got_best.step == best.step
    for name in ck.params:
        np.testing.assert_array_equal(got.params[name], ck.params[name], err_msg=name)
        np.testing.assert_array_equal(got_best.params[name], best.params[name], err_msg=name)
    for key in ("m", "v", "t"):
        np.testing.assert_array_equal(got.optimizer[key], ck.optimizer[key])
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


# ----------------------------------------------------------------------------- 10, 11, 13: kills

@pytest.mark.parametrize("fault, left", [
    ("kill@eval:logged@2", "the log line of step 2 but not its checkpoint"),
    ("kill@rename:checkpoint.npz@2", "a temporary checkpoint file"),
    ("kill@eval:checkpointed@0", "the first checkpoint but no best.npz"),
    ("kill@rename:best.npz@0", "the first checkpoint and a temporary best.npz"),
    ("kill@rename:checkpoint.npz@0", "no checkpoint at all"),
])
def test_sigkill_anywhere_resumes_to_the_uninterrupted_run(data, tmp_path, reference, fault,
                                                           left):
    out = tmp_path / "run"
    r = _subprocess(_argv(data, out), fault=fault)
    assert r.returncode == -signal.SIGKILL, r.stderr
    if "rename" in fault:
        assert [n for n in os.listdir(out) if n.endswith(".tmp")], left
    assert (out / "checkpoint.npz").exists() == (fault != "kill@rename:checkpoint.npz@0")
    r = _subprocess(["--resume", "--out", out])
    assert r.returncode == 0, f"after {left}:\n{r.stderr}"
    _assert_same_run(out, reference)


def test_a_folder_without_a_checkpoint_can_also_start_again(data, tmp_path, reference):
    out = tmp_path / "run"
    r = _subprocess(_argv(data, out), fault="kill@rename:checkpoint.npz@0")
    assert r.returncode == -signal.SIGKILL and (out / "config.json").exists()
    r = _subprocess(_argv(data, out))            # the same command again, without --resume
    assert r.returncode == 0, r.stderr
    _assert_same_run(out, reference)


# ----------------------------------------------------------------------------- double Ctrl-C, ENOSPC

def test_double_ctrl_c_before_the_first_checkpoint_leaves_no_folder(data, tmp_path, capsys,
                                                                   monkeypatch, reference):
    out = tmp_path / "run"
    rc, _, err = _cli(_argv(data, out), capsys, "sigint2@rename:checkpoint.npz@0", monkeypatch)
    assert rc == 130 and "error: interrupted" in err
    assert not out.exists()
    rc, _, err = _cli(_argv(data, out), capsys)
    assert rc == 0, err
    _assert_same_run(out, reference)


def test_double_ctrl_c_between_checkpoint_and_best_resumes(data, tmp_path, capsys, monkeypatch,
                                                           reference):
    out = tmp_path / "run"
    rc, _, err = _cli(_argv(data, out), capsys, "sigint2@eval:checkpointed@0", monkeypatch)
    assert rc == 130 and (out / "checkpoint.npz").exists() and not (out / "best.npz").exists()
    rc, _, err = _cli(["--resume", "--out", out], capsys)
    assert rc == 0, err
    _assert_same_run(out, reference)


@pytest.mark.parametrize("at", [0, 2])
def test_full_disk_is_one_error_and_the_folder_stays_usable(data, tmp_path, capsys, monkeypatch,
                                                            reference, at):
    out = tmp_path / "run"
    rc, _, err = _cli(_argv(data, out), capsys, f"enospc@rename:checkpoint.npz@{at}",
                      monkeypatch)
    assert rc == 1 and "No space left on device" in _one_error(err)
    if at == 0:
        assert not out.exists()                # nothing to resume: nothing left behind
        rc, _, err = _cli(_argv(data, out), capsys)
    else:
        rc, _, err = _cli(["--resume", "--out", out], capsys)
    assert rc == 0, err
    _assert_same_run(out, reference)


# ----------------------------------------------------------------------------- 16: signals

@pytest.mark.parametrize("point", ["eval:valid", "eval:samples"])
def test_a_signal_cuts_evaluation_and_sampling_short(data, tmp_path, capsys, monkeypatch,
                                                     reference, point):
    out = tmp_path / "run"
    rc, _, err = _cli(_argv(data, out), capsys, f"sigterm@{point}@2", monkeypatch)
    assert rc == 130 and "SIGTERM: stopped at step 2" in err, err
    rc, _, err = _cli(["--resume", "--out", out], capsys)
    assert rc == 0, err
    _assert_same_run(out, reference)


def test_samples_are_bounded(data, tmp_path, capsys):
    rc, _, err = _cli(_argv(data, tmp_path / "run", "--samples", "100000"), capsys)
    assert rc == 1 and "--samples must be an integer from 0 to 100" in _one_error(err)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- 12: the lock

def test_a_folder_in_use_is_refused_and_released_on_exit(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out / train.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)      # another run holds it
    try:
        rc, _, err = _cli(_argv(data, out), capsys)
        assert rc == 1 and "in use by another training run (process 4242)" in _one_error(err)
        assert sorted(os.listdir(out)) == [train.LOCK_NAME]
    finally:
        os.close(fd)
    rc, _, err = _cli(_argv(data, out), capsys)
    assert rc == 0, err
    rc, _, err = _cli(["--resume", "--out", out, "--steps", "6"], capsys)  # released on exit
    assert rc == 0, err


def test_two_runs_never_share_a_folder(data, tmp_path):
    out = tmp_path / "run"
    # the first run stops itself (SIGSTOP) in its step-2 evaluation, holding --out
    first = subprocess.Popen([sys.executable, "-m", "minisketch.train", *_argv(data, out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, **{faults.ENV: "stop@eval:valid@2"}))
    try:
        _, status = os.waitpid(first.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)
        second = _subprocess(_argv(data, out))
        resume = _subprocess(["--resume", "--out", out])
        first.send_signal(signal.SIGCONT)
        first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0
    assert "in use by another training run (process " in _one_error(second.stderr)
    assert "in use by another training run" in _one_error(resume.stderr)
    assert [r["step"] for r in _rows(out)] == [0, 2, 4]


# ----------------------------------------------------------------------------- 15: foreign folders

def test_a_foreign_non_empty_folder_is_refused_untouched(data, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in (("config.json", '{"me": 1}'), ("log.jsonl", "x\n"),
                       ("samples.png", "not a picture")):
        (out / name).write_text(text)
    before = {n: (out / n).read_text() for n in os.listdir(out)}
    rc, _, err = _cli(_argv(data, out), capsys)
    assert rc == 1 and "is not empty and is not a minisketch run" in _one_error(err)
    assert {n: (out / n).read_text() for n in os.listdir(out)} == before
    rc, _, err = _cli(["--resume", "--out", out], capsys)
    assert rc == 1 and "no checkpoint" in _one_error(err)
    assert {n: (out / n).read_text() for n in os.listdir(out)} == before


def test_an_empty_folder_is_left_empty_by_an_early_failure(data, tmp_path, capsys,
                                                          monkeypatch):
    out = tmp_path / "empty"
    out.mkdir()
    rc, _, err = _cli(_argv(data, out), capsys, "enospc@rename:checkpoint.npz@0", monkeypatch)
    assert rc == 1 and os.listdir(out) == []


# ----------------------------------------------------------------------------- 14: bad options

@pytest.mark.parametrize("option, value, fragment", [
    ("--grad_clip", "-1", "grad_clip must be a number in (0, 1e+06], got -1.0"),
    ("--grad_clip", "0", "grad_clip"),
    ("--learning_rate", "nan", "learning_rate"),
    ("--kl_decay_rate", "2", "kl_decay_rate"),
    ("--recurrent_dropout_prob", "0", "recurrent_dropout_prob"),
    ("--seed", "-1", "--seed must be an integer from 0"),
    ("--max_seq_len", "100000", "max_seq_len"),
])
def test_bad_numeric_options_are_refused_before_any_folder(data, tmp_path, capsys, option,
                                                           value, fragment):
    out = tmp_path / "run"
    rc, _, err = _cli(_argv(data, out, option, value), capsys)
    assert rc == 1 and fragment in _one_error(err)
    assert not out.exists()


def test_bad_data_leaves_no_folder(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    out = tmp_path / "run"
    rc, _, err = _cli(["--data", bad, "--out", out, *TINY], capsys)
    assert rc == 1 and "not a .npz file" in _one_error(err)
    assert not out.exists()


# ----------------------------------------------------------------------------- 9: tampered state

def _tamper(out, train_state=None, training=None, rng=None):
    path = Path(out) / "checkpoint.npz"
    ck = ckpt.load_checkpoint(path)
    config = dict(ck.config)
    if training is not None:
        config["training"] = training(dict(config["training"]))
    ckpt.save_checkpoint(path, ck.params, config, step=ck.step, optimizer=ck.optimizer,
                         rng=rng(dict(ck.rng)) if rng else ck.rng,
                         train_state=train_state(dict(ck.train_state)) if train_state
                         else ck.train_state)


def _set(key, value):
    def f(d):
        d[key] = value
        return d
    return f


def _drop(key):
    def f(d):
        d.pop(key)
        return d
    return f


@pytest.mark.parametrize("tamper, fragment", [
    (dict(train_state=_set("best_valid_loss", "0.5")), "best_valid_loss"),
    (dict(train_state=_set("train_sums", {"loss": "1"})), "train_sums"),
    (dict(train_state=_set("train_count", -1)), "train_count"),
    (dict(train_state=_set("last_eval_step", 10 ** 9)), "last_eval_step"),
    (dict(train_state=_set("seconds", None)), "seconds"),
    (dict(training=_drop("max_seq_len_limit")), "max_seq_len_limit"),
    (dict(training=_set("eval_every", 0)), "eval_every"),
    (dict(training=_set("samples", 10 ** 6)), "samples"),
    (dict(training=_set("seed", "0")), "seed"),
    (dict(rng=_set("batches", {"bit_generator": "PCG64", "state": "x"})), "batch RNG"),
], ids=["best_str", "sums_str", "count_neg", "last_eval_huge", "seconds_null", "no_limit",
        "eval_every_0", "samples_huge", "seed_str", "rng_garbage"])
def test_tampered_resume_state_is_one_error_line(data, tmp_path, capsys, tamper, fragment):
    out = tmp_path / "run"
    rc, _, err = _cli(_argv(data, out, "--steps", "2"), capsys)
    assert rc == 0, err
    _tamper(out, **tamper)
    rc, _, err = _cli(["--resume", "--out", out, "--steps", "4"], capsys)
    assert rc == 1 and fragment in _one_error(err)
    assert (out / "checkpoint.npz").exists()             # a failed resume removes nothing
