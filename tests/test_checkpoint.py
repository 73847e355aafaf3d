"""Checkpoints: pickle-free round trips, atomic writes, clear errors for bad files."""
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minisketch import checkpoint as ckpt
from minisketch.errors import ModelError
from minisketch.hparams import HParams

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CONFIG = {"hparams": HParams().to_dict(), "scale_factor": 12.5, "max_seq_len": 40,
          "backend": "numpy", "dtype": "float32", "seed": 3}


def _write_simple(path, **kw):
    params = {"out/W": np.arange(6, dtype=np.float32).reshape(2, 3),
              "out/b": np.array([0.5, -1.0, 2.0], np.float32)}
    ckpt.save_checkpoint(path, params, CONFIG, **kw)
    return params


def test_round_trip_with_optimizer_and_pcg64_state(tmp_path):
    gen = np.random.default_rng(12345)
    gen.standard_normal(7)                         # move it off its start
    state = gen.bit_generator.state
    assert state["state"]["state"] > 2 ** 64       # 128-bit integers survive JSON
    optim = {"m": np.full(9, 0.25, np.float32), "v": np.full(9, 1e-3, np.float32),
             "t": np.asarray(17, np.int64), "betas_eps": np.array([0.9, 0.999, 1e-8])}
    params = _write_simple(tmp_path / "c.npz", step=17, optimizer=optim,
                           rng={"batches": state}, train_state={"best": 1.5, "count": 3})
    ck = ckpt.load_checkpoint(tmp_path / "c.npz")
    assert ck.step == 17 and ck.config == CONFIG
    assert ck.train_state == {"best": 1.5, "count": 3}
    for name, a in params.items():
        np.testing.assert_array_equal(ck.params[name], a)
        assert ck.params[name].dtype == a.dtype
    for key in ("m", "v", "t", "betas_eps"):
        np.testing.assert_array_equal(ck.optimizer[key], optim[key])
    again = np.random.default_rng(0)
    again.bit_generator.state = ck.rng["batches"]
    np.testing.assert_array_equal(again.standard_normal(5), gen.standard_normal(5))


def test_file_is_plain_arrays_loadable_without_pickle(tmp_path):
    _write_simple(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        for name in z.files:
            assert z[name].dtype != object
        head = json.loads(z["format"].tobytes().decode())
    assert head == {"format": "minisketch-checkpoint", "version": 1}


def test_model_file_has_no_optimizer(tmp_path):
    _write_simple(tmp_path / "m.npz")
    assert ckpt.load_checkpoint(tmp_path / "m.npz").optimizer is None


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    _write_simple(path, step=1)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.np, "savez", broken_savez)
    with pytest.raises(Exception, match="No space left"):
        _write_simple(path, step=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_interrupted_write_leaves_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    _write_simple(path, step=1)

    def interrupted(f, **arrays):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _write_simple(path, step=2)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path).step == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.7, 0.99])
def test_truncated_file_is_a_model_error(tmp_path, cut):
    path = tmp_path / "c.npz"
    _write_simple(path, step=5)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(ModelError, match="c.npz"):
        ckpt.load_checkpoint(path)


def test_flipped_bytes_are_a_model_error(tmp_path):
    path = tmp_path / "c.npz"
    _write_simple(path)
    data = bytearray(path.read_bytes())
    # corrupt the stored bytes of the first member's array data (the CRC catches it)
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + 80
    for i in range(start, start + 8):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt"):
        ckpt.load_checkpoint(path)


def test_not_a_zip_and_missing_file(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(ModelError, match="x.npz is not a model: expected a run folder, a "
                                         "checkpoint .npz or a .gen.json"):
        ckpt.load_checkpoint(tmp_path / "x.npz")
    with pytest.raises(ModelError, match="no checkpoint"):
        ckpt.load_checkpoint(tmp_path / "missing.npz")


def test_dataset_npz_is_refused_without_unpickling(tmp_path):
    # a sketch-rnn dataset: object arrays (pickles) under train/valid/test
    arr = np.empty(1, dtype=object)
    arr[0] = np.zeros((3, 3), np.int16)
    np.savez(tmp_path / "d.npz", train=arr, valid=arr, test=arr)
    with pytest.raises(ModelError, match="not a model.*it is a sketch-rnn dataset"):
        ckpt.load_checkpoint(tmp_path / "d.npz")


class _Boom:
    def __reduce__(self):
        return (pytest.fail, ("unpickled a checkpoint entry",))


def test_pickled_entry_is_refused_not_executed(tmp_path):
    path = tmp_path / "c.npz"
    _write_simple(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    evil = np.empty(1, dtype=object)
    evil[0] = _Boom()
    arrays["params/out/b"] = evil
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ModelError, match="corrupt"):
        ckpt.load_checkpoint(path)


def test_missing_entries_are_a_model_error(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, format=ckpt.json_to_array({"format": ckpt.FORMAT, "version": 1}))
    with pytest.raises(ModelError, match="missing config"):
        ckpt.load_checkpoint(path)


# ----------------------------------------------------------------------------- with a model

TINY = dict(enc_rnn_size=6, dec_rnn_size=8, z_size=3, num_mixture=2, batch_size=2,
            max_seq_len=10)


def _model(**kw):
    model_mod = pytest.importorskip("minisketch.model", reason="model.py not available yet")
    hp = HParams(**{**TINY, **kw})
    return model_mod.SketchRNN(hp, backend="numpy", dtype="float32", seed=4, scale_factor=7.5)


def test_save_and_load_model_round_trip(tmp_path):
    m = _model()
    rng = np.random.default_rng(0)
    m.flat[:] = rng.normal(size=m.flat.shape).astype(np.float32)
    ckpt.save_model(m, tmp_path / "m.npz")
    m2 = ckpt.load_model(tmp_path / "m.npz")
    assert m2.hp == m.hp and m2.scale_factor == 7.5 and m2.param_names == m.param_names
    np.testing.assert_array_equal(m2.flat, m.flat)
    # a training folder resolves to best.npz first, else checkpoint.npz
    run = tmp_path / "run"
    run.mkdir()
    ckpt.save_model(m, run / "checkpoint.npz")
    np.testing.assert_array_equal(ckpt.load_model(run).flat, m.flat)
    m.flat[:] = 0.5
    ckpt.save_model(m, run / "best.npz")
    np.testing.assert_array_equal(ckpt.load_model(run).flat, m.flat)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no best.npz"):
        ckpt.load_model(tmp_path / "empty")


def test_wrong_shapes_for_the_config_are_a_model_error(tmp_path):
    m = _model()
    ckpt.save_model(m, tmp_path / "m.npz")
    ck = ckpt.load_checkpoint(tmp_path / "m.npz")
    config = dict(ck.config, hparams=dict(ck.config["hparams"], dec_rnn_size=9))
    ckpt.save_checkpoint(tmp_path / "bad.npz", ck.params, config)
    with pytest.raises(ModelError, match=r"parameter dec\S+ has shape \[3, 16\], "
                                         r"the model.s config needs \[3, 18\]"):
        ckpt.load_model(tmp_path / "bad.npz")


def test_missing_parameter_is_a_model_error(tmp_path):
    m = _model()
    params = m.state_dict()
    params.pop("out/b")
    ckpt.save_checkpoint(tmp_path / "bad.npz", params, ckpt.model_config(m))
    with pytest.raises(ModelError, match="missing out/b"):
        ckpt.load_model(tmp_path / "bad.npz")


def test_gen_json_loads_as_decoder_only_model(tmp_path):
    magenta = pytest.importorskip("minisketch.magenta")
    H, M = 4, 20
    rng = np.random.default_rng(1)
    shapes = magenta.expected_shapes(H, M)
    arrays = {n: rng.uniform(-1, 1, size=s).astype(np.float32) for n, s in shapes.items()}
    path = tmp_path / "tiny.gen.json"
    magenta.write_gen_json(path, arrays, {"name": "tiny", "scale_factor": 33.0,
                                          "max_seq_len": 50})
    m = ckpt.load_model(path)
    assert not m.hp.conditional and m.hp.dec_rnn_size == H and m.hp.num_mixture == M
    assert m.hp.max_seq_len == 50 and m.scale_factor == 33.0
    assert sorted(m.param_names) == sorted(shapes)
    for n, a in arrays.items():
        np.testing.assert_allclose(m.params[n], a, atol=10 / 32767 / 2 + 1e-6)


def test_pretrained_sheep_gen_json_loads():
    path = DATA / "pretrained" / "sheep.gen.json"
    if not path.exists():
        pytest.skip(f"{path} not present (shared real data folder absent)")
    m = ckpt.load_model(path)
    assert m.hp.dec_rnn_size == 512 and m.hp.num_mixture == 20 and not m.hp.conditional
    assert m.num_params == 1_123_963
