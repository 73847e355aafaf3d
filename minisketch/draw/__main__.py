"""Command line: ``python -m minisketch.draw [--model PATH ...] [--host H] [--port P] ...``.

Loads the models, binds the server, prints exactly one line ``serving on http://HOST:PORT/``
on stdout (flushed; ``--port 0`` picks a free port and prints it), then serves until Ctrl-C
(or SIGTERM), which stops it cleanly with exit status 0. Errors before serving (a model that
does not load, a port in use) are one ``error:`` line and exit status 1.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from ..cpu import blas_threads
from ..errors import MinisketchError, run_cli
from .models import DEFAULT_MODEL, load_models
from .server import make_server

BACKENDS = ("numpy", "numba")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535, got {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m minisketch.draw",
        description="Serve a page where you draw and a model finishes, varies, morphs and "
                    "dreams sketches. Open the printed address in a browser.")
    p.add_argument("--model", action="append", metavar="PATH",
                   help=f"a training run folder, a .npz model or checkpoint, a magenta.js "
                        f".gen.json, a folder holding several of them, or {DEFAULT_MODEL} "
                        f"(the default); repeat to serve several models")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=_port, default=8000,
                   help="port to listen on (default 8000; 0 picks a free one)")
    p.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="array backend the models run on (default numpy)")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    p.add_argument("--quiet", action="store_true", help="do not log each request on stderr")
    return p


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # One request's products are small ([n, H] x [H, 4H]): threads only contend, and requests
    # to different models already run side by side.
    with blas_threads(1):
        return serve(args)


def serve(args) -> int:
    models = load_models(args.model or [DEFAULT_MODEL], backend=args.backend)
    try:
        server = make_server(models, args.host, args.port, quiet=args.quiet)
    except OSError as e:
        raise MinisketchError(f"cannot listen on {args.host}:{args.port} "
                              f"({e.strerror or e}); pick another --port (0 picks a free "
                              f"one) or --host") from None
    print(f"serving on {server.url}", flush=True)
    for m in models.values():
        info = m.info()
        print(f"model {info['name']}: {info['kind']} {info['cell']}, M = "
              f"{info['num_mixture']}, modes {', '.join(info['modes'])}", file=sys.stderr)
    if not server.loopback:
        print(f"warning: listening on {args.host}: other computers can reach this page",
              file=sys.stderr)
    print("press Ctrl-C to stop", file=sys.stderr, flush=True)
    if args.open:
        import webbrowser
        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if main_thread else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        server.server_close()
    print("stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
