"""Draw with a model in the browser: ``python -m minisketch.draw [--model PATH ...]``.

A local server (standard library only) serves one static page and a small JSON API. You draw
the start of a sketch and the model finishes it several ways (``finish``), draws variations of
your drawing (``variations``: conditional models), morphs one drawing into another along the
slerp path between their latent vectors (``morph``) or dreams sketches from random latent
vectors (``dream``). Layout:

    models.py   loading --model specs, naming, modes, one lock per model, dataset examples
    api.py      request checks and the four modes, as functions of (models, request bytes)
    server.py   the HTTP server: static files by exact path, JSON answers and errors
    __main__.py the command line
    static/     index.html, app.js, style.css (no build step, nothing from a CDN)

See docs/draw.md for the API and the page.
"""
from .api import ApiError
from .models import DrawModel, load_models
from .server import DrawServer, make_server

__all__ = ["ApiError", "DrawModel", "DrawServer", "load_models", "make_server"]
