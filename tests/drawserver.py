"""Helpers for the draw server tests: small models of every kind, and a real server process.

The models are untrained (random weights) with the pen biased towards "down", so that they
draw for many rows and rarely end; they exercise every code path at a fraction of the cost of a
trained model. ``vae_lstm`` records ``builtin:shapes`` as its training data, so it has examples.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SERVING = re.compile(r"^serving on http://(127\.0\.0\.1):(\d+)/$")
MODEL_SPECS = {   # name -> (conditional, encoder cell, decoder cell)
    "dec_lstm": (False, "lstm", "lstm"),
    "vae_hyper": (True, "hyper", "hyper"),
    "vae_ln": (True, "layer_norm", "layer_norm"),
    "vae_lstm": (True, "lstm", "lstm"),
}
MAX_SEQ_LEN = 109       # builtin:shapes' N_max, so that its test sketches are all examples


def make_models(folder: Path) -> Path:
    """Write the test models (and a dataset .npz the server must skip) into ``folder``."""
    from minisketch.checkpoint import model_config, save_checkpoint
    from minisketch.hparams import HParams
    from minisketch.model import SketchRNN
    folder.mkdir(parents=True, exist_ok=True)
    for name, (conditional, enc, dec) in MODEL_SPECS.items():
        hp = HParams(conditional=conditional, enc_model=enc, dec_model=dec, enc_rnn_size=8,
                     dec_rnn_size=16, z_size=4, num_mixture=3, max_seq_len=MAX_SEQ_LEN,
                     hyper_num_units=8, hyper_embedding_size=4)
        model = SketchRNN(hp, backend="numpy", dtype="float32", seed=1, scale_factor=12.0)
        b = model.params["out/b"]
        b[0:3] = np.asarray([3.0, 1.0, -6.0], dtype=b.dtype)    # pen: mostly down, rarely end
        config = model_config(model)
        if name == "vae_lstm":
            config["training"] = {"data": ["builtin:shapes"]}
        save_checkpoint(folder / f"{name}.npz", model.state_dict(), config)
    np.savez(folder / "a_dataset.npz", train=np.zeros(3), valid=np.zeros(3), test=np.zeros(3))
    return folder


def env() -> dict:
    """The environment for a server process: this checkout first on the path."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in
                                                      e.get("PYTHONPATH", "").split(os.pathsep)
                                                      if p])
    return e


class Server:
    """``python -m minisketch.draw ARGS --port 0`` as a process; ``.port``, ``.stop()``."""

    def __init__(self, args, log: Path, timeout: float = 120.0):
        self.log = log
        self._err = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minisketch.draw", *map(str, args), "--port", "0"],
            stdout=subprocess.PIPE, stderr=self._err, cwd=ROOT, env=env())
        line = self._first_line(timeout)
        m = SERVING.match(line)
        if not m:
            self.stop()
            raise RuntimeError(f"unexpected first line {line!r}; stderr: {self.stderr()}")
        self.first_line = line
        self.host, self.port = m.group(1), int(m.group(2))

    def _first_line(self, timeout: float) -> str:
        out = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not out:
            self.proc.kill()
            raise RuntimeError(f"the server printed nothing in {timeout} s; stderr: "
                               f"{self.stderr()}")
        return out[0].decode("utf-8").rstrip("\n")

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig=signal.SIGINT, timeout: float = 30.0) -> int:
        """Send ``sig`` (Ctrl-C by default) and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()
        self.proc.stdout.close()
        return self.proc.returncode

    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 60.0):
        """Send one request with the exact path given -> (status, headers dict, parsed body).

        ``body``: bytes, or any other value sent as JSON (Content-Type application/json)."""
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            if body is not None and "Content-Length" not in headers:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        if hdrs.get("content-type", "").startswith("application/json"):
            data = json.loads(data)
        return resp.status, hdrs, data

    def post(self, mode: str, body, **kw):
        return self.request("POST", f"/api/{mode}", body, **kw)


def stop_and_check(server: Server, sig=signal.SIGINT):
    """Stop the server; it must exit 0 without a traceback."""
    rc = server.stop(sig)
    err = server.stderr()
    assert rc == 0, f"exit status {rc} after {sig!r}; stderr:\n{err}"
    assert "Traceback" not in err, err
    return err
