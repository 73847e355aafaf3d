"""The argument parser every command uses: both flag spellings, short usage errors.

    p = ArgumentParser(prog="python -m minisketch.train", description=...)
    p.add_argument("--batch-size", type=int)       # also accepts --batch_size
    args = p.parse_args(argv)

- Every long flag accepts dashes and underscores (``--eval-every`` and ``--eval_every``): the
  spelling given on the command line is mapped to the declared one before parsing, so ``--help``
  lists each flag once, as declared (dashes).
- Abbreviated flags are not accepted (``--batch`` is an error, not a guess).
- A usage error prints two lines on stderr, a short usage line (the command, its required
  arguments, ``[options]``) and ``error: <what is wrong>``, then exits with status 2. An unknown
  flag is named with the closest known one.
"""
from __future__ import annotations

import argparse
import difflib
import sys


def canonical(flag: str) -> str:
    """The spelling-independent form of a long flag: ``--batch_size`` -> ``--batch-size``."""
    return "--" + flag[2:].replace("_", "-")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with both flag spellings and a two-line usage error."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ spellings

    def _declared_flags(self) -> dict:
        """canonical spelling -> declared spelling, for this parser's long flags."""
        return {canonical(s): s for s in self._option_string_actions if s.startswith("--")}

    def _respell(self, args: list[str]) -> list[str]:
        declared = self._declared_flags()
        out = []
        for k, arg in enumerate(args):
            if arg == "--":                      # everything after it is positional
                return out + args[k:]
            if arg.startswith("--") and len(arg) > 2:
                flag, eq, value = arg.partition("=")
                if flag not in self._option_string_actions:
                    arg = declared.get(canonical(flag), flag) + eq + value
            out.append(arg)
        return out

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self._respell(args), namespace)

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen_subparser(namespace).error(self._unrecognized(extras))
        return namespace

    def _chosen_subparser(self, namespace) -> "ArgumentParser":
        """The parser of the subcommand given (``sample generate``), else this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(namespace, action.dest, None))
                if isinstance(chosen, ArgumentParser):
                    return chosen
        return self

    # ------------------------------------------------------------------ errors

    def _all_flags(self) -> list[str]:
        flags = [s for s in self._option_string_actions if s.startswith("--")]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags += [s for s in sub._option_string_actions if s.startswith("--")]
        return sorted(set(flags))

    def _unrecognized(self, extras: list[str]) -> str:
        known = self._all_flags()
        flags = [a for a in extras if a.startswith("-")]
        extras = flags or extras            # a stray value after an unknown flag adds nothing
        parts = []
        for arg in extras:
            text = arg
            if arg.startswith("--"):
                flag = canonical(arg.partition("=")[0])
                close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
                if close:
                    text += f" (did you mean {close[0]}?)"
            parts.append(text)
        noun = "argument" if len(extras) == 1 else "arguments"
        return f"unrecognized {noun}: {', '.join(parts)}"

    def short_usage(self) -> str:
        """``usage: PROG REQUIRED... [options]``: one line, unlike argparse's full usage."""
        parts, optional = [self.prog], False
        for action in self._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                parts.append(action.metavar or "{" + ",".join(action.choices) + "}")
            elif not action.option_strings:
                name = action.metavar or action.dest.upper()
                parts.append(f"{name} [{name} ...]" if action.nargs in ("+", "*") else name)
            elif action.required:
                parts.append(f"{action.option_strings[0]} {action.metavar or action.dest.upper()}")
            else:
                optional = True
        if optional:
            parts.append("[options]")
        return "usage: " + " ".join(parts)

    def format_help(self) -> str:
        if self.usage is None:                   # the short usage; the options follow anyway
            self.usage = self.short_usage()[len("usage: "):].replace("%", "%%")
        return super().format_help()

    def error(self, message: str):
        self.exit(2, f"{self.short_usage()}\nerror: {message}; {self.prog} --help lists the "
                     f"options\n")


class LenientParser(ArgumentParser):
    """A parser that raises ``argparse.ArgumentError`` instead of exiting: for reading a few
    flags ahead of the real parse (``train --help`` reads ``--preset`` and ``--data`` first)."""

    def error(self, message: str):
        raise argparse.ArgumentError(None, message)
