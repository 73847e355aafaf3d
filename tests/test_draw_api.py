"""The draw server's API against a real server process on an ephemeral port (issue 21).

Every mode on every kind of model (decoder-only, conditional with lstm / layer_norm / hyper
cells), answers equal to the library's own calls, every kind of bad request refused with a 4xx
JSON error while the server keeps serving, concurrent requests that do not mix, and the command
line's exits (Ctrl-C and SIGTERM exit 0; bad options and unloadable models one error line).
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drawserver import MAX_SEQ_LEN, MODEL_SPECS, ROOT, Server, env, make_models, stop_and_check
from minisketch.checkpoint import load_model
from minisketch.draw import api
from minisketch.draw.models import MAX_WAITING, load_models
from minisketch.draw.server import make_server
from minisketch.sampling import encode_mu, sample, slerp

STROKES = [[0, 0, 0], [12, 4, 0], [10, -6, 0], [3, 15, 1], [-30, 5, 0], [8.5, -2.25, 0],
           [6, 6, 1]]
CONDITIONAL = [n for n, spec in MODEL_SPECS.items() if spec[0]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("draw_models"))


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    s = Server(["--model", model_dir, "--quiet"], tmp_path_factory.mktemp("log") / "err.txt")
    yield s
    stop_and_check(s)


def serving(server) -> bool:
    status, _, models = server.request("GET", "/api/models")
    return status == 200 and isinstance(models, list)


def rounded(sketches):
    return [np.round(np.asarray(s, dtype=np.float64), api.ROUND) for s in sketches]


def same_sketches(got, want, atol=2e-3):
    """Answers (JSON rows) vs library sketches rounded like the server rounds them."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = np.asarray(g, dtype=np.float64).reshape(-1, 3)
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=atol)


# ----------------------------------------------------------------------------- serving

def test_first_line_models_and_skipped_files(server):
    assert server.port != 0
    assert server.first_line == f"serving on http://127.0.0.1:{server.port}/"
    status, headers, models = server.request("GET", "/api/models")
    assert status == 200 and headers["content-type"] == "application/json"
    assert [m["name"] for m in models] == sorted(MODEL_SPECS)
    for m in models:
        conditional, enc, dec = MODEL_SPECS[m["name"]]
        assert m["kind"] == ("conditional" if conditional else "decoder-only")
        assert m["cell"] == dec and m["num_mixture"] == 3 and m["max_seq_len"] == MAX_SEQ_LEN
        assert m["encoder_cell"] == (enc if conditional else None)
        assert m["modes"] == (["finish", "variations", "morph", "dream"] if conditional
                              else ["finish", "dream"])
        assert m["examples"] == (m["name"] == "vae_lstm")
        assert m["extent"] > 0
    assert "a_dataset.npz" in server.stderr() and "warning:" in server.stderr()


def test_static_files_only(server):
    status, headers, body = server.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<canvas" in body and b"app.js" in body
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    for path, ctype, marker in (("/index.html", "text/html", b"<!doctype html>"),
                                ("/app.js", "text/javascript", b"window.minisketch"),
                                ("/style.css", "text/css", b":root")):
        status, headers, body = server.request("GET", path)
        assert status == 200 and headers["content-type"].startswith(ctype) and marker in body
    status, headers, body = server.request("HEAD", "/app.js")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000
    status, _, body = server.request("GET", "/?v=2")
    assert status == 200 and b"<canvas" in body


# ----------------------------------------------------------------------------- the modes

@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_complete_begins_with_the_strokes_and_matches_the_library(server, model_dir, name):
    body = {"model": name, "strokes": STROKES, "n": 3, "temperature": 0.7, "seed": 11}
    status, _, answer = server.post("complete", body)
    assert status == 200, answer
    sketches = answer["sketches"]
    assert len(sketches) == 3 and answer["seconds"] >= 0
    for s in sketches:
        assert s[:len(STROKES)] == STROKES                       # row for row, exactly
        assert len(s) > len(STROKES)                             # the model added rows
        assert all(r[2] in (0, 1) and np.isfinite(r[:2]).all() for r in s)
    model = load_model(model_dir / f"{name}.npz")
    want = model.complete(np.asarray(STROKES, dtype=np.float64), n=3, temperature=0.7, seed=11)
    same_sketches(sketches, rounded(want))


def test_variations_morph_dream_match_the_library(server, model_dir):
    name = "vae_hyper"
    model = load_model(model_dir / f"{name}.npz")
    a = np.asarray(STROKES, dtype=np.float64)
    b = a[:4]
    status, _, got = server.post("variations", {"model": name, "strokes": STROKES, "n": 2,
                                                "temperature": 0.4, "seed": 3})
    assert status == 200, got
    mu = encode_mu(model, [a])[0]
    same_sketches(got["sketches"], rounded(sample(model, n=2, z=mu, temperature=0.4, seed=3)))
    status, _, got = server.post("morph", {"model": name, "sketches": [STROKES, STROKES[:4]],
                                           "n": 4, "temperature": 0.3, "seed": 5})
    assert status == 200, got
    za, zb = encode_mu(model, [a, b])
    path = slerp(za, zb, np.linspace(0, 1, 4))
    same_sketches(got["sketches"], rounded(sample(model, z=path, temperature=0.3, seed=5)))
    status, _, got = server.post("dream", {"model": name, "n": 3, "temperature": 1.0,
                                           "seed": 9})
    assert status == 200, got
    same_sketches(got["sketches"], rounded(sample(model, n=3, temperature=1.0, seed=9)))


@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_every_mode_a_model_offers_answers(server, name):
    conditional = MODEL_SPECS[name][0]
    requests = {"complete": {"strokes": STROKES}, "variations": {"strokes": STROKES},
                "morph": {"sketches": [STROKES, STROKES[2:]]}, "dream": {}}
    for mode, extra in requests.items():
        status, _, answer = server.post(mode, {"model": name, "n": 2, **extra})
        if mode in ("variations", "morph") and not conditional:
            assert status == 400 and "decoder-only" in answer["error"]
        else:
            assert status == 200, answer
            assert len(answer["sketches"]) == 2


def test_defaults_and_seeds(server):
    body = {"strokes": STROKES}          # model: the first one; n 4; temperature 0.8; seed 0
    status, _, first = server.post("complete", body)
    assert status == 200 and len(first["sketches"]) == 4
    _, _, again = server.post("complete", {**body, "model": "dec_lstm", "n": 4,
                                           "temperature": 0.8, "seed": 0})
    assert again["sketches"] == first["sketches"]
    _, _, other = server.post("complete", {**body, "seed": 1})
    assert other["sketches"] != first["sketches"]
    status, _, morph = server.post("morph", {"model": "vae_ln", "sketches": [STROKES, STROKES]})
    assert status == 200 and len(morph["sketches"]) == 5


def test_examples_are_test_sketches_of_the_training_data(server):
    from minisketch.datasets import load_dataset
    status, _, got = server.request("GET", "/api/examples?model=vae_lstm&n=3&seed=5")
    assert status == 200, got
    test = load_dataset("builtin:shapes", max_seq_len=MAX_SEQ_LEN).test
    assert len(got["sketches"]) == 3 and len(set(got["indices"])) == 3
    for i, s in zip(got["indices"], got["sketches"]):
        np.testing.assert_array_equal(np.asarray(s), test[i])
    _, _, same = server.request("GET", "/api/examples?model=vae_lstm&n=3&seed=5")
    assert same == got
    status, _, err = server.request("GET", "/api/examples?model=dec_lstm")
    assert status == 404 and "no examples" in err["error"]


# ----------------------------------------------------------------------------- bad requests

BIG = json.dumps({"model": "vae_lstm", "strokes": [[1.0, 1.0, 0]] * 120_000}).encode()
DEEP = b"[" * 100_000 + b"]" * 100_000
J = {"Content-Type": "application/json"}


def body(**fields):
    return json.dumps({"model": "vae_lstm", "strokes": STROKES, **fields}).encode()


BAD = [
    # (id, method, path, body, headers, status, words in the error)
    ("too-big", "POST", "/api/complete", BIG, J, 413, "at most 1000000"),
    ("invalid-json", "POST", "/api/complete", b'{"strokes": [[0, 0, 0]', J, 400, "not valid JSON"),
    ("not-utf8", "POST", "/api/complete", b'{"model": "\xff"}', J, 400, "UTF-8"),
    ("not-an-object", "POST", "/api/complete", b"[1, 2, 3]", J, 400, "JSON object"),
    ("deep-nesting", "POST", "/api/complete", DEEP, J, 400, "nested"),
    ("nesting-5", "POST", "/api/complete",
     json.dumps({"strokes": [[[0, 0, [0]]]]}).encode(), J, 400, "nested 5 levels"),
    ("row-of-lists", "POST", "/api/complete",
     json.dumps({"strokes": [[[0, 0, 0]]]}).encode(), J, 400, "row 0"),
    ("too-many-points", "POST", "/api/complete",
     json.dumps({"strokes": [[1, 1, 0]] * (api.MAX_POINTS + 1)}).encode(), J, 400, "points"),
    ("morph-too-many", "POST", "/api/morph",
     json.dumps({"model": "vae_lstm", "sketches": [[[1, 1, 0]] * 2000] * 2}).encode(), J, 400,
     "together"),
    ("nan", "POST", "/api/complete", b'{"strokes": [[NaN, 0, 0]]}', J, 400, "NaN"),
    ("infinity", "POST", "/api/complete", b'{"strokes": [[0, -Infinity, 0]]}', J, 400,
     "Infinity"),
    ("overflow", "POST", "/api/complete", b'{"strokes": [[1e999, 0, 0]]}', J, 400, "finite"),
    ("huge-int", "POST", "/api/complete", b'{"strokes": [[1' + b"0" * 400 + b', 0, 0]]}', J,
     400, "finite"),
    ("far-offset", "POST", "/api/complete", body(strokes=[[0, 20000, 0]]), J, 400, "at most"),
    ("pen-2", "POST", "/api/complete", body(strokes=[[0, 0, 2]]), J, 400, "pen_lifted"),
    ("pen-true", "POST", "/api/complete", body(strokes=[[0, 0, True]]), J, 400, "pen_lifted"),
    ("dx-string", "POST", "/api/complete", body(strokes=[["1", 0, 0]]), J, 400, "dx"),
    ("short-row", "POST", "/api/complete", body(strokes=[[0, 0]]), J, 400, "row 0"),
    ("empty-strokes", "POST", "/api/complete", body(strokes=[]), J, 400, "empty"),
    ("no-strokes", "POST", "/api/variations", b'{"model": "vae_lstm"}', J, 400, "needs strokes"),
    ("strokes-object", "POST", "/api/complete", body(strokes={"a": 1}), J, 400, "list"),
    ("n-17", "POST", "/api/complete", body(n=17), J, 400, "n must be from 1 to 16"),
    ("n-0", "POST", "/api/complete", body(n=0), J, 400, "n must be from 1 to 16"),
    ("n-float", "POST", "/api/complete", body(n=2.5), J, 400, "whole number"),
    ("n-string", "POST", "/api/complete", body(n="4"), J, 400, "whole number"),
    ("n-bool", "POST", "/api/complete", body(n=True), J, 400, "whole number"),
    ("morph-n-1", "POST", "/api/morph", json.dumps(
        {"model": "vae_lstm", "sketches": [STROKES, STROKES], "n": 1}).encode(), J, 400,
     "n must be from 2"),
    ("temperature-0", "POST", "/api/complete", body(temperature=0), J, 400, "(0, 2]"),
    ("temperature-neg", "POST", "/api/complete", body(temperature=-0.5), J, 400, "(0, 2]"),
    ("temperature-2.01", "POST", "/api/complete", body(temperature=2.01), J, 400, "(0, 2]"),
    ("temperature-str", "POST", "/api/complete", body(temperature="hot"), J, 400, "number"),
    ("seed-negative", "POST", "/api/complete", body(seed=-1), J, 400, "seed"),
    ("seed-huge", "POST", "/api/complete", body(seed=2**40), J, 400, "seed"),
    ("unknown-model", "POST", "/api/complete", body(model="cat"), J, 404, "unknown model"),
    ("model-not-string", "POST", "/api/complete", body(model=[1]), J, 400, "model"),
    ("unknown-field", "POST", "/api/dream", body(), J, 400, "unknown field 'strokes'"),
    ("morph-one-sketch", "POST", "/api/morph", json.dumps(
        {"model": "vae_lstm", "sketches": [STROKES]}).encode(), J, 400, "two"),
    ("morph-decoder-only", "POST", "/api/morph", json.dumps(
        {"model": "dec_lstm", "sketches": [STROKES, STROKES]}).encode(), J, 400, "decoder-only"),
    ("no-content-type", "POST", "/api/complete", body(), {}, 415, "application/json"),
    ("text-plain", "POST", "/api/complete", body(), {"Content-Type": "text/plain"}, 415,
     "application/json"),
    ("bad-length", "POST", "/api/complete", body(),
     {**J, "Content-Length": "-5"}, 400, "Content-Length"),
    ("chunked", "POST", "/api/complete", None, {**J, "Transfer-Encoding": "chunked"}, 411,
     "chunked"),
    ("no-length", "POST", "/api/complete", None, J, 411, "Content-Length"),
    ("unknown-path", "GET", "/secret.txt", None, {}, 404, "not found"),
    ("unknown-api", "POST", "/api/finish", body(), J, 404, "not found"),
    ("traversal", "GET", "/../pyproject.toml", None, {}, 404, "not found"),
    ("traversal-static", "GET", "/static/../../minisketch/draw/server.py", None, {}, 404,
     "not found"),
    ("traversal-encoded", "GET", "/%2e%2e/%2e%2e/etc/passwd", None, {}, 404, "not found"),
    ("traversal-encoded-slash", "GET", "/..%2f..%2fpyproject.toml", None, {}, 404, "not found"),
    ("traversal-backslash", "GET", "/..\\..\\pyproject.toml", None, {}, 404, "not found"),
    ("double-slash", "GET", "//etc/passwd", None, {}, 404, "not found"),
    ("source-file", "GET", "/server.py", None, {}, 404, "not found"),
    ("get-post-api", "GET", "/api/complete", None, {}, 405, "use POST"),
    ("post-page", "POST", "/", body(), J, 405, "use GET"),
    ("put", "PUT", "/api/complete", body(), J, 405, "use POST"),
    ("delete", "DELETE", "/", None, {}, 405, "not allowed"),
    ("unknown-method", "BREW", "/", None, {}, 501, "Unsupported method"),
    ("models-query", "GET", "/api/models?x=1", None, {}, 400, "no query"),
    ("examples-bad-n", "GET", "/api/examples?model=vae_lstm&n=99", None, {}, 400, "n must"),
    ("examples-n-text", "GET", "/api/examples?model=vae_lstm&n=abc", None, {}, 400, "n must"),
    ("examples-unknown", "GET", "/api/examples?model=vae_lstm&x=1", None, {}, 400, "unknown"),
    ("examples-twice", "GET", "/api/examples?model=a&model=b", None, {}, 400, "once"),
    ("wrong-host", "GET", "/api/models", None, {"Host": "evil.example:80"}, 403, "localhost"),
]


@pytest.mark.parametrize("method, path, data, headers, status, words",
                         [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_get_4xx_json_and_the_server_keeps_serving(server, method, path, data,
                                                                  headers, status, words):
    got, hdrs, answer = server.request(method, path, data, headers)
    assert got == status, answer
    assert hdrs["content-type"] == "application/json"
    assert isinstance(answer, dict) and list(answer) == ["error"]
    assert words in answer["error"], answer["error"]
    assert serving(server)


def test_a_declared_huge_body_is_refused_without_reading_it(server):
    with socket.create_connection((server.host, server.port), timeout=30) as s:
        s.sendall(b"POST /api/complete HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                  b"application/json\r\nContent-Length: 50000000000\r\n\r\n" + b"[" * 1000)
        s.shutdown(socket.SHUT_WR)
        reply = b"".join(iter(lambda: s.recv(65536), b""))
    assert reply.startswith(b"HTTP/1.0 413") and b'"error"' in reply
    assert serving(server)


def test_malformed_and_stalled_connections_do_not_stop_the_server(server):
    with socket.create_connection((server.host, server.port), timeout=30) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        reply = b"".join(iter(lambda: s.recv(65536), b""))
    assert b"400" in reply.split(b"\r\n")[0] and b'"error"' in reply
    # a client that sends half a request and waits, and one that hangs up mid-body
    stalled = socket.create_connection((server.host, server.port), timeout=30)
    stalled.sendall(b"POST /api/complete HTTP/1.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{\"str")
    with socket.create_connection((server.host, server.port), timeout=30) as s:
        s.sendall(b"POST /api/dream HTTP/1.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"n\":")
    for _ in range(3):
        assert serving(server)
    status, _, answer = server.post("complete", {"model": "vae_ln", "strokes": STROKES})
    assert status == 200, answer
    stalled.close()
    assert serving(server)


def test_concurrent_requests_do_not_mix(server):
    jobs = [("complete", {"model": m, "strokes": STROKES, "n": 2, "seed": s})
            for m in ("vae_hyper", "dec_lstm") for s in (1, 2)]
    jobs += [("variations", {"model": "vae_ln", "strokes": STROKES, "n": 3, "seed": s})
             for s in (3, 4)]
    jobs += [("dream", {"model": m, "n": 2, "seed": 7}) for m in ("vae_lstm", "vae_hyper")]
    jobs = jobs * 2           # at most 6 requests per model at once (MAX_WAITING is 8)
    alone = [server.post(mode, b)[2] for mode, b in jobs]
    together = [None] * len(jobs)

    def run(i):
        together[i] = server.post(*jobs[i])[2]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [a["sketches"] for a in together] == [a["sketches"] for a in alone]


# ----------------------------------------------------------------------------- in process

@pytest.fixture(scope="module")
def local(model_dir):
    """The same models served from this process (to hold a model's lock from the test)."""
    models = load_models([model_dir / "vae_lstm.npz", model_dir / "dec_lstm.npz"],
                         warn=lambda m: None)
    srv = make_server(models, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _post_local(srv, mode, body):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=60)
    conn.request("POST", f"/api/{mode}", json.dumps(body), J)
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read())
    conn.close()
    return out


def test_a_busy_model_answers_429_and_others_still_answer(local):
    entry = local.models["vae_lstm"]
    results = []
    with entry.lock:
        threads = [threading.Thread(target=lambda: results.append(
            _post_local(local, "dream", {"model": "vae_lstm", "n": 1})))
            for _ in range(MAX_WAITING)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while entry.waiting < MAX_WAITING and time.monotonic() < deadline:
            time.sleep(0.01)
        assert entry.waiting == MAX_WAITING
        status, answer = _post_local(local, "dream", {"model": "vae_lstm", "n": 1})
        assert status == 429 and "busy" in answer["error"]
        status, answer = _post_local(local, "dream", {"model": "dec_lstm", "n": 1})
        assert status == 200
    for t in threads:
        t.join(60)
    assert [s for s, _ in results] == [200] * MAX_WAITING


def test_json_depth_ignores_brackets_in_strings():
    assert api.json_depth(b'{"a": "[[[[[[[[", "b": [[1]]}') == 3
    assert api.json_depth(b'{"a": "\\"[[[[[[", "b": []}') == 2
    assert api.json_depth(b"") == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=30)
FIELD_VALUES = st.dictionaries(
    st.sampled_from(["model", "strokes", "n", "temperature", "seed", "sketches"]),
    JSON_VALUES | st.sampled_from(["vae_lstm", "dec_lstm", 1, 16, 0.5, 2.0])
    | st.lists(st.lists(st.integers(-3, 3) | st.floats(-50, 50), min_size=3, max_size=3),
               max_size=6), max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(sorted(api.FIELDS)), fields=FIELD_VALUES)
def test_any_json_object_is_answered_or_refused_with_4xx(local, mode, fields):
    data = json.dumps(fields).encode()
    try:
        answer = api.post(local.models, mode, data)
    except api.ApiError as e:
        assert 400 <= e.status < 500, e.message
        return
    assert len(answer["sketches"]) == fields.get("n", api.DEFAULT_N.get(mode, 4))


# ----------------------------------------------------------------------------- command line

def run_cli(args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minisketch.draw", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env())


@pytest.mark.parametrize("args, code, words", [
    (["--model", "no/such/model.npz"], 1, "no model at no/such/model.npz"),
    (["--port", "70000"], 2, "from 0 to 65535"),
    (["--port", "x"], 2, "port number"),
    (["--backend", "torch"], 2, "invalid choice"),
])
def test_bad_command_lines_are_one_error_line(args, code, words):
    r = run_cli(args)
    assert r.returncode == code, r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    if code == 1:
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")


def test_a_folder_without_models_is_an_error(tmp_path):
    r = run_cli(["--model", tmp_path])
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "holds no models" in r.stderr


def test_a_port_in_use_is_an_error(model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = run_cli(["--model", model_dir / "dec_lstm.npz", "--port", port])
    assert r.returncode == 1 and r.stderr.startswith("error: cannot listen on")
    assert r.stdout == "" and r.stderr.count("\n") == 1


def test_help():
    r = run_cli(["--help"])
    assert r.returncode == 0 and "--model" in r.stdout and "builtin:shapes" in r.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_cleanly(model_dir, tmp_path, sig):
    s = Server(["--model", model_dir / "dec_lstm.npz"], tmp_path / "err.txt")
    assert serving(s)
    err = stop_and_check(s, sig)
    assert "stopped" in err
    assert '"GET /api/models HTTP/1.1" 200' in err      # requests are logged without --quiet


def test_default_model_is_builtin_shapes(tmp_path):
    from minisketch.errors import ModelError
    try:
        load_model("builtin:shapes")
    except ModelError:
        r = run_cli([])
        assert r.returncode == 1 and r.stderr.startswith("error: the packaged model "
                                                         "builtin:shapes")
        assert r.stderr.count("\n") == 1 and "--model" in r.stderr
        return
    s = Server([], tmp_path / "err.txt")
    try:
        _, _, models = s.request("GET", "/api/models")
        assert [m["name"] for m in models] == ["builtin:shapes"]
        assert models[0]["kind"] == "conditional" and models[0]["examples"]
        status, _, got = s.post("variations", {"strokes": STROKES})
        assert status == 200 and len(got["sketches"]) == 4
    finally:
        stop_and_check(s)


def test_sheep_gen_json_finishes_a_half_sheep(tmp_path):
    from conftest import shared_file
    path = shared_file("pretrained/sheep.gen.json")
    s = Server(["--model", path, "--quiet"], tmp_path / "err.txt")
    try:
        _, _, models = s.request("GET", "/api/models")
        assert models[0]["name"] == "sheep" and models[0]["kind"] == "decoder-only"
        sheep = sample(load_model(path), n=1, temperature=0.3, seed=2)[0]
        half = [[float(a), float(b), int(p)] for a, b, p in sheep[:len(sheep) // 2]]
        status, _, got = s.post("complete", {"model": "sheep", "strokes": half, "n": 4,
                                             "temperature": 0.5, "seed": 0})
        assert status == 200
        assert all(k[:len(half)] == half and len(k) > len(half) for k in got["sketches"])
    finally:
        stop_and_check(s)


def test_the_numba_backend_serves_the_same_api(model_dir, tmp_path):
    s = Server(["--model", model_dir / "vae_hyper.npz", "--model", model_dir / "dec_lstm.npz",
                "--backend", "numba", "--quiet"], tmp_path / "err.txt")
    try:
        for name in ("vae_hyper", "dec_lstm"):
            status, _, got = s.post("complete", {"model": name, "strokes": STROKES, "n": 2})
            assert status == 200, got
            assert all(k[:len(STROKES)] == STROKES and len(k) > len(STROKES)
                       for k in got["sketches"])
        status, _, got = s.post("morph", {"model": "vae_hyper", "sketches": [STROKES, STROKES]})
        assert status == 200 and len(got["sketches"]) == 5
    finally:
        stop_and_check(s)


def test_a_drawing_as_long_as_the_model_allows_comes_back_unchanged(server):
    long = [[1.0, (-1.0) ** i, 0] for i in range(MAX_SEQ_LEN + 5)]
    status, _, got = server.post("complete", {"model": "vae_ln", "strokes": long, "n": 2})
    assert status == 200 and got["sketches"] == [long, long]
