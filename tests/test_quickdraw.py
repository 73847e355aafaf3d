"""QuickDraw: ndjson conversion, splits, and downloads against a local HTTP server (no internet)."""
from __future__ import annotations

import http.server
import io
import json
import os
import socket
import threading
import urllib.parse

import numpy as np
import pytest

from minisketch import data, quickdraw
from minisketch.datasets import load_dataset
from minisketch.errors import DataError, run_cli
from minisketch.safe_npz import load_npz
from minisketch.strokes import stroke3_to_polylines

SIMPLE = [[[10, 20, 30], [5, 5, 40]], [[100, 100], [0, 50]]]
RAW = [[[1000, 1100, 1510], [500, 500, 600], [0, 16, 40]], [[1000, 1200], [500, 500], [90, 120]]]


def npz_bytes(n=30):
    rng = np.random.default_rng(0)
    sketches = []
    for _ in range(n):
        s = np.zeros((int(rng.integers(3, 9)), 3), dtype=np.int16)
        s[:, :2] = rng.integers(-20, 20, size=(len(s), 2))
        s[-1, 2] = 1
        sketches.append(s)
    arrays = {}
    for k, part in (("train", sketches[:20]), ("valid", sketches[20:25]), ("test", sketches[25:])):
        a = np.empty(len(part), dtype=object)
        a[:] = part
        arrays[k] = a
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def ndjson_text(drawings):
    return "".join(json.dumps({"word": "thing", "key_id": str(i), "drawing": d}) + "\n"
                   for i, d in enumerate(drawings))


# ------------------------------------------------------------------------------------ conversion


def test_simplified_drawing_to_stroke3_follows_the_spec():
    s3 = quickdraw.drawing_to_stroke3(SIMPLE, epsilon=0)
    assert s3.dtype == np.int16
    np.testing.assert_array_equal(s3, [[10, 5, 0], [10, 0, 0], [10, 35, 1],
                                       [70, -40, 0], [0, 50, 1]])
    lines = stroke3_to_polylines(s3)
    np.testing.assert_array_equal(lines[0], [[10, 5], [20, 5], [30, 40]])


def test_rdp_epsilon_simplifies_each_stroke():
    line = [[list(range(0, 101, 10)), [0] * 11]]        # straight: only the ends survive
    assert len(quickdraw.drawing_to_stroke3(line, epsilon=2.0)) == 2
    assert len(quickdraw.drawing_to_stroke3(line, epsilon=0)) == 11


def test_raw_drawing_is_scaled_to_0_255():
    s3 = quickdraw.drawing_to_stroke3(RAW, epsilon=0)
    pts = np.concatenate(stroke3_to_polylines(s3))
    assert pts.min(axis=0).tolist() == [0, 0]
    assert pts.max() == 255                               # longer side spans 0..255
    np.testing.assert_array_equal(pts, [[0, 0], [50, 0], [255, 50], [0, 0], [100, 0]])


@pytest.mark.parametrize("drawing, pattern", [
    ("nope", "expected a list"),
    ([[[1, 2], [3]]], "different lengths"),
    ([[[1, 2]]], r"\[\[x...\], \[y...\]\]"),
    ([[["a", "b"], [1, 2]]], "not numbers"),
    ([[[1.0, float("nan")], [1, 2]]], "NaN"),
])
def test_bad_drawings_are_clear_errors(drawing, pattern):
    with pytest.raises(DataError, match=pattern):
        quickdraw.drawing_to_stroke3(drawing)


def test_read_ndjson_errors_name_the_line(tmp_path):
    good = json.dumps({"drawing": SIMPLE})
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        quickdraw.read_ndjson([good, '{"drawing": [[[1, 2'])
    with pytest.raises(DataError, match='line 1 has no "drawing"'):
        quickdraw.read_ndjson(['{"word": "cat"}'])
    with pytest.raises(DataError, match="HTML page"):
        quickdraw.read_ndjson(["<html><body>rate limited</body></html>"])
    with pytest.raises(DataError, match="holds no drawings"):
        quickdraw.read_ndjson(["", json.dumps({"drawing": []})])
    p = tmp_path / "x.ndjson"
    p.write_text(good + "\n\n" + good + "\n")
    assert len(quickdraw.read_ndjson(p)) == 2
    assert len(quickdraw.read_ndjson(p, limit=1)) == 1


def test_split_is_deterministic_disjoint_and_complete():
    sketches = [np.full((i + 1, 3), i) for i in range(100)]
    a = quickdraw.split_sketches(sketches, seed=1)
    b = quickdraw.split_sketches(sketches, seed=1)
    c = quickdraw.split_sketches(sketches, seed=2)
    ids = lambda part: [int(s[0, 0]) for s in part]   # noqa: E731
    assert {k: len(v) for k, v in a.items()} == {"train": 90, "valid": 5, "test": 5}
    assert all(ids(a[k]) == ids(b[k]) for k in a)
    assert ids(a["train"]) != ids(c["train"])
    assert sorted(sum((ids(v) for v in a.values()), [])) == list(range(100))
    with pytest.raises(DataError, match="at least 3"):
        quickdraw.split_sketches(sketches[:2])


def test_convert_ndjson_writes_a_loadable_npz(tmp_path):
    src = tmp_path / "in.ndjson"
    long = [[list(range(0, 200, 4)), [0, 9] * 25]]                     # 50 points, zigzag
    src.write_text(ndjson_text([SIMPLE] * 40 + [long] * 2 + [RAW] * 3))
    out = tmp_path / "out.npz"
    summary = quickdraw.convert_ndjson(src, out, epsilon=2.0, max_seq_len=20, seed=3)
    assert summary["dropped"] == 2 and sum(summary["splits"].values()) == 43
    ours = load_npz(out)
    ref = np.load(out, allow_pickle=True, encoding="latin1")
    for k in ("train", "valid", "test"):
        assert len(ours[k]) == summary["splits"][k]
        for a, b in zip(ours[k], ref[k]):
            assert a.dtype == np.int16
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------ downloads


class FakeServer:
    """A local HTTP server (127.0.0.1, port 0) serving ``routes``; counts requests per path.

    route value: (status, body bytes, extra headers dict, declared Content-Length or None).
    """

    def __init__(self):
        self.routes = {}
        self.hits = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = urllib.parse.unquote(self.path)
                server.hits[path] = server.hits.get(path, 0) + 1
                status, body, headers, length = server.routes.get(
                    path, (404, b"not found", {}, None))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def serve(self, path, body, status=200, headers=None, length=None):
        self.routes[path] = (status, body, headers or {}, length)


@pytest.fixture
def server():
    s = FakeServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_download_succeeds_and_is_cached(server, tmp_path):
    body = npz_bytes()
    server.serve("/sea turtle.npz", body)
    path = quickdraw.download("sea turtle", cache_dir=tmp_path, base_url=server.url)
    assert path == tmp_path / "sea turtle.npz" and path.read_bytes() == body
    assert os.listdir(tmp_path) == ["sea turtle.npz"]
    again = quickdraw.download("sea turtle", cache_dir=tmp_path, base_url=server.url)
    assert again == path and server.hits["/sea turtle.npz"] == 1       # no second request
    assert len(load_npz(path)["train"]) == 20


def test_download_404_is_an_unknown_class(server, tmp_path):
    with pytest.raises(DataError, match="unknown QuickDraw class 'unicornfish'.*404"):
        quickdraw.download("unicornfish", cache_dir=tmp_path, base_url=server.url)
    assert os.listdir(tmp_path) == []


def test_truncated_body_is_refused(server, tmp_path):
    body = npz_bytes()
    server.serve("/cat.npz", body[:1000], length=len(body))      # promises more, then closes
    with pytest.raises(DataError, match="truncated"):
        quickdraw.download("cat", cache_dir=tmp_path, base_url=server.url)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/html"])
def test_html_body_is_refused(server, tmp_path, content_type):
    server.serve("/cat.npz", b"<!DOCTYPE html><html><body>Sign in</body></html>",
                 headers={"Content-Type": content_type})
    with pytest.raises(DataError, match="HTML page"):
        quickdraw.download("cat", cache_dir=tmp_path, base_url=server.url)
    assert os.listdir(tmp_path) == []


def test_npz_and_ndjson_format_checks(server, tmp_path):
    server.serve("/cat.npz", b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a complete zip"):
        quickdraw.download("cat", cache_dir=tmp_path, base_url=server.url)
    server.serve("/dog.ndjson", b'{"word": "dog"}\n')
    with pytest.raises(DataError, match='no "drawing"'):
        quickdraw.download("dog", cache_dir=tmp_path, base_url=server.url, fmt="ndjson")
    assert os.listdir(tmp_path) == []
    server.serve("/dog.ndjson", ndjson_text([SIMPLE] * 3).encode())
    path = quickdraw.download("dog", cache_dir=tmp_path, base_url=server.url, fmt="ndjson")
    assert path.name == "dog.ndjson" and len(quickdraw.read_ndjson(path)) == 3


def test_offline_is_one_clear_error(tmp_path):
    with socket.socket() as s:                     # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="cannot reach .* offline"):
        quickdraw.download("cat", cache_dir=tmp_path, base_url=f"http://127.0.0.1:{port}")
    assert os.listdir(tmp_path) == []


def test_cache_dir_resolution_and_urls(monkeypatch, tmp_path):
    monkeypatch.setenv("MINISKETCH_CACHE", str(tmp_path / "env"))
    assert quickdraw.resolve_cache_dir() == tmp_path / "env"
    assert quickdraw.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("MINISKETCH_CACHE")
    assert quickdraw.resolve_cache_dir().parts[-2:] == (".cache", "minisketch")
    assert quickdraw.class_url("sea turtle") == \
        "https://storage.googleapis.com/quickdraw_dataset/sketchrnn/sea%20turtle.npz"
    assert quickdraw.class_url("cat", "ndjson") == \
        "https://storage.googleapis.com/quickdraw_dataset/full/simplified/cat.ndjson"
    assert quickdraw.is_class_name("The Eiffel Tower") and quickdraw.is_class_name("t-shirt")
    assert not quickdraw.is_class_name("../etc/passwd") and not quickdraw.is_class_name("a.npz")
    with pytest.raises(DataError, match="not a QuickDraw class name"):
        quickdraw.download("../x", cache_dir=tmp_path)


def test_class_name_source_downloads_once(server, tmp_path):
    server.serve("/cat.npz", npz_bytes())
    ds = load_dataset("cat", cache_dir=tmp_path, base_url=server.url)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (20, 5, 5)
    assert ds.class_names == ["cat"]
    load_dataset("cat", cache_dir=tmp_path, base_url=server.url)
    assert server.hits["/cat.npz"] == 1


def test_download_command(server, tmp_path, capsys):
    server.serve("/cat.npz", npz_bytes())
    argv = ["download", "cat", "--cache-dir", str(tmp_path), "--base-url", server.url]
    assert run_cli(data.main, argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cat.npz")
    assert run_cli(data.main, argv[:1] + ["nosuchthing"] + argv[2:]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown QuickDraw class") and err.count("\n") == 1
