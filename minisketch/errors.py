"""User-facing errors and the command-line wrapper that turns them into one clear line.

Every command follows the same contract (docs/CONTRACT.md): exit 0 on success, 2 on a usage
error (argparse does that), 1 on bad input with a single ``error: ...`` line on stderr and no
traceback. Library code raises :class:`MinisketchError` (or a subclass) with a message that says
what is wrong and what to do; :func:`run_cli` prints it. ``--debug`` shows the traceback.
Printing never fails: a path the terminal's encoding cannot show is printed with escapes.
"""
from __future__ import annotations

import sys


class MinisketchError(Exception):
    """Bad input or an unusable environment: shown to users as one ``error:`` line."""


class DataError(MinisketchError):
    """A dataset, sketch or file that cannot be used."""


class ModelError(MinisketchError):
    """A model file or configuration that cannot be used."""


class BackendError(MinisketchError):
    """A backend that is not available here (e.g. CuPy without a GPU)."""


def tolerant_output() -> None:
    """Make stdout and stderr print any text: characters their encoding lacks (a file name in
    another script, undecodable bytes of a path) come out as backslash escapes."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict":
            try:
                stream.reconfigure(errors="backslashreplace")
            except (AttributeError, ValueError, OSError):
                pass


def run_cli(main, argv=None) -> int:
    """Call ``main(argv)`` and map errors to the CLI contract; returns the exit code."""
    tolerant_output()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        rc = main(argv)
        return 0 if rc is None else int(rc)
    except MinisketchError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if debug:
            raise
        print("error: out of memory: the input asks for more memory than this machine has "
              "(use smaller sizes or a smaller file)", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:  # e.g. unwritable output path, malformed numbers
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
