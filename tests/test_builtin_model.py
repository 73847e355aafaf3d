"""The packaged model (minisketch/models/shapes.npz, loaded as "builtin:shapes"): it loads from
Python and the command line, is small, ships in the package, and is trained (its losses and its
latent space are far from an untrained model's)."""
from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minisketch as ms
from minisketch import models
from minisketch.checkpoint import load_checkpoint, resolve_model_path
from minisketch.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]
FILE = ROOT / "minisketch" / "models" / "shapes.npz"


@pytest.fixture(scope="module")
def model():
    return ms.load_model("builtin:shapes")


@pytest.fixture(scope="module")
def shapes():
    return ms.load_dataset("builtin:shapes")


def test_file_is_small_float16_and_conditional():
    assert FILE.stat().st_size <= 1 << 20
    ck = load_checkpoint(FILE)
    assert ck.optimizer is None
    assert all(a.dtype == np.float16 for a in ck.params.values())
    assert ck.config["hparams"]["conditional"] is True
    assert ck.config["training"]["data"] == ["builtin:shapes"]


def test_resolves_to_the_package_file():
    assert resolve_model_path("builtin:shapes") == FILE.resolve()


def test_unknown_builtin_name_is_one_clear_error():
    with pytest.raises(ModelError, match="builtin:cats is not a packaged model; packaged "
                                         "models: builtin:shapes"):
        ms.load_model("builtin:cats")


def test_loads_as_float32_on_numpy(model):
    assert model.hp.conditional and model.dtype == np.float32
    assert model.backend.name == "numpy"
    assert all(np.isfinite(np.asarray(v)).all() for v in model.state_dict().values())


def test_is_trained(model, shapes):
    """Validation loss well below an untrained model's (about +2.3) and below -0.7."""
    from minisketch.train import evaluate
    got = evaluate(model, shapes.valid[:100], 100, shapes.max_seq_len, shapes.scale_factor,
                   step=0)
    assert got["loss"] < -0.7, got


def test_latent_space_separates_the_classes(model, shapes):
    """Nearest neighbour of mu among 700 training sketches: test accuracy far above chance
    (1/7) on the 7 shape classes (an untrained encoder scores near chance)."""
    train_idx = np.arange(len(shapes.train))[::7]
    mu_train, _ = model.encode([shapes.train[i] for i in train_idx])
    labels_train = np.asarray(shapes.labels["train"])[train_idx]
    mu_test, _ = model.encode(list(shapes.test))
    nearest = np.argmin(((mu_test[:, None, :] - mu_train[None]) ** 2).sum(-1), axis=1)
    accuracy = float((labels_train[nearest] == np.asarray(shapes.labels["test"])).mean())
    assert accuracy > 0.7, accuracy


def test_generate_from_the_command_line(tmp_path):
    out = tmp_path / "shapes.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "minisketch.sample", "generate", "--model",
                        "builtin:shapes", "-n", "4", "--out", str(out)], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    from minisketch.render import load_sketches_npz
    sketches = load_sketches_npz(out)
    assert len(sketches) == 4 and all(len(s) >= 5 for s in sketches)


def test_package_data_names_the_file():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11+")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["minisketch"]
    assert any(fnmatch.fnmatch("models/shapes.npz", p) for p in patterns)
    assert set(models.BUILTIN_MODELS.values()) == {"shapes.npz"}


@pytest.mark.slow
def test_a_non_editable_install_ships_the_model(tmp_path):
    """pip install . (not editable) into a folder, then load the model from there."""
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (target / "minisketch" / "models" / "shapes.npz").is_file()
    code = ("import minisketch as ms; print(ms.__file__); "
            "print(ms.load_model('builtin:shapes').num_params)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)}, timeout=300)
    assert r.returncode == 0, r.stderr
    where, num_params = r.stdout.split()
    assert Path(where).is_relative_to(target) and int(num_params) > 0


def test_pack_script_writes_a_float16_model_that_loads(tmp_path, shapes):
    """scripts/pack_model.py: checkpoint -> float16 model file, same losses to float16 rounding."""
    from minisketch.checkpoint import save_model
    hp = ms.HParams(enc_rnn_size=8, dec_rnn_size=16, z_size=4, num_mixture=3,
                    max_seq_len=shapes.max_seq_len)
    small = ms.SketchRNN(hp, seed=1, scale_factor=shapes.scale_factor)
    save_model(small, tmp_path / "best.npz")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "pack_model.py"),
                        str(tmp_path / "best.npz"), str(tmp_path / "packed.npz")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(tmp_path / "packed.npz")
    assert all(a.dtype == np.float16 for a in ck.params.values())
    package = ck.config["package"]
    assert package["stored_dtype"] == "float16"
    assert abs(package["valid_loss_float16"] - package["valid_loss_float32"]) < 1e-2
    packed = ms.load_model(tmp_path / "packed.npz")
    for name, a in small.state_dict().items():
        np.testing.assert_allclose(packed.state_dict()[name], a, rtol=1e-3, atol=1e-4,
                                   err_msg=name)
