"""Grade the exercises you write: the lesson's own checks, run on your functions.

    python lessons/grade.py                 list the graded exercises
    python lessons/grade.py 03              grade lessons/exercises/03_*.py
    python lessons/grade.py 03 --hint       ... and print a hint for each unfinished function
    python lessons/grade.py 03 --hint 2     ... more detailed hints (levels 1-3)
    python lessons/grade.py 03 --solution   grade the worked solution, lessons/solutions/03_*.py
    python lessons/grade.py 03 --file F.py  grade your own copy kept elsewhere
    python lessons/grade.py all             every exercise

For each function it prints "correct", "not yet implemented: NAME", "wrong: ..." (which tensor,
its worst error and where, the tolerance) or the error your code raised. The checks live in
lessons/grading/exNN.py. Exit status: 0 when every function is correct, 1 otherwise, 2 for a
usage error.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import textwrap
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _p in (HERE.parent, HERE):                 # this checkout of minisketch, then lessons/
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from minisketch.cli import ArgumentParser  # noqa: E402
from minisketch.errors import MinisketchError, run_cli  # noqa: E402
from grading import Wrong  # noqa: E402

EXERCISES = HERE / "exercises"
SOLUTIONS = HERE / "solutions"


def available() -> dict[str, Path]:
    """'03' -> lessons/exercises/03_lstm_cell.py, for every exercise that has checks."""
    found = {}
    for p in sorted(EXERCISES.glob("[0-9][0-9]_*.py")):
        if (HERE / "grading" / f"ex{p.name[:2]}.py").is_file():
            found[p.name[:2]] = p
    return found


def load(path: Path):
    """Import a Python file as a fresh module (so an edited file is re-read every time)."""
    name = f"_graded_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        where = _where(e, path)
        raise MinisketchError(f"{path} could not be loaded: {type(e).__name__}: {e}{where}; "
                              "fix it and run the grader again") from None
    return module


def _where(e: BaseException, path: Path) -> str:
    """' (line N of FILE)' for the deepest frame of the learner's file in e's traceback."""
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if Path(f.filename).resolve() == path.resolve()]
    if isinstance(e, SyntaxError) and e.lineno:
        return f" (line {e.lineno} of {path.name})"
    return f" (line {frames[-1].lineno} of {path.name})" if frames else ""


def grade_function(check, module, path: Path) -> tuple[str, str]:
    """(status, message): status is ok, blank, wrong, error or missing."""
    fn = getattr(module, check.name, None)
    if not callable(fn):
        return "missing", f"missing: {path.name} defines no function {check.name}"
    try:
        check.run(fn)
    except NotImplementedError as e:
        who = str(e).split(":", 1)[0].strip()
        if who and who != check.name and who.isidentifier():
            return "blank", f"not yet implemented: {check.name} (it calls {who}, still a blank)"
        return "blank", f"not yet implemented: {check.name}"
    except Wrong as e:
        return "wrong", f"wrong: {e}"
    except Exception as e:                      # the learner's code raised: say what and where
        return "error", f"error: {type(e).__name__}: {e}{_where(e, path)}"
    return "ok", "correct"


def grade(number: str, solution: bool = False, path: Path | None = None) -> list[tuple]:
    """[(function name, status, message, hints)] for exercise ``number`` ('03')."""
    checks = importlib.import_module(f"grading.ex{number}").CHECKS
    if path is None:
        folder = SOLUTIONS if solution else EXERCISES
        matches = sorted(folder.glob(f"{number}_*.py"))
        if not matches:
            raise MinisketchError(f"no file {folder.name}/{number}_*.py in {folder}")
        path = matches[0]
    module = load(path)
    return [(c.name, *grade_function(c, module, path), c.hints) for c in checks]


def report(number: str, results, path_label: str, hint_level: int) -> bool:
    print(f"lesson {number}: grading {path_label}")
    width = max(len(r[0]) for r in results)
    for name, status, message, hints in results:
        print(f"  {name:{width}s}  {message}")
        if hint_level and status != "ok":
            for level, hint in enumerate(hints[:hint_level], 1):
                pad = " " * (width + 4)
                print(textwrap.fill(f"hint {level}: {hint}", 100, initial_indent=pad,
                                    subsequent_indent=pad + "  "))
    n_ok = sum(r[1] == "ok" for r in results)
    print(f"  {n_ok} of {len(results)} correct")
    return n_ok == len(results)


def main(argv=None) -> int:
    p = ArgumentParser(prog="python lessons/grade.py",
                       description="Grade the lessons' exercises with the lessons' own checks.")
    p.add_argument("lesson", nargs="?", help="lesson number (03) or 'all'; none: list them")
    p.add_argument("--solution", action="store_true", help="grade the worked solution instead")
    p.add_argument("--file", help="grade this file instead of lessons/exercises/NN_*.py")
    p.add_argument("--hint", nargs="?", type=int, const=1, default=0, metavar="LEVEL",
                   help="print hints (level 1-3) for the functions not yet correct")
    args = p.parse_args(argv)
    found = available()
    if args.lesson is None:
        print("graded exercises (python lessons/grade.py NN):")
        for number, path in found.items():
            checks = importlib.import_module(f"grading.ex{number}").CHECKS
            print(f"  {number}  {path.relative_to(HERE.parent)}: "
                  + ", ".join(c.name for c in checks))
        return 0
    if args.hint < 0:
        p.error(f"--hint LEVEL must be 1 or more, got {args.hint}")
    numbers = list(found) if args.lesson == "all" else [args.lesson.zfill(2)]
    unknown = [n for n in numbers if n not in found]
    if unknown:
        p.error(f"no graded exercise for lesson {unknown[0]}; graded: {', '.join(found)}")
    if args.file and len(numbers) != 1:
        p.error("--file grades one lesson's exercise: give its number, not 'all'")
    all_ok = True
    for number in numbers:
        path = Path(args.file) if args.file else None
        if path is not None and not path.is_file():
            raise MinisketchError(f"--file {path}: no such file")
        results = grade(number, args.solution, path)
        label = str(path) if path else f"lessons/{'solutions' if args.solution else 'exercises'}" \
            f"/{found[number].name}"
        all_ok &= report(number, results, label, args.hint)
    if not all_ok and not args.hint:
        print("stuck? add --hint (or --hint 2, --hint 3) for hints; --solution grades the "
              "worked solution")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
