"""The graded exercises: every worked solution passes the grader, every blank fails clearly.

``lessons/exercises/NN_*.py`` holds the functions a learner writes (blanks raise
NotImplementedError), ``lessons/solutions/NN_*.py`` the worked versions and
``lessons/grading/exNN.py`` the checks that ``python lessons/grade.py NN`` runs. These tests
grade each solution (all "correct"), each blank file ("not yet implemented: NAME" for every
blank, "correct" for the functions given complete), a planted mistake ("wrong", naming the
tensor and its worst error), and keep the exercise and solution files in step.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS_DIR = ROOT / "lessons"
EXERCISES = sorted((LESSONS_DIR / "exercises").glob("[0-9][0-9]_*.py"))
SOLUTIONS = LESSONS_DIR / "solutions"
CORE = {"03": "LSTM step backward", "04": "BPTT through a masked sequence",
        "05": "the encoder's reverse pass", "06": "the KL and its gradient",
        "07": "the mixture loss gradient", "11": "one sampling step"}

sys.path.insert(0, str(LESSONS_DIR))
import grade  # noqa: E402


def _ids(paths):
    return [p.stem for p in paths]


def _functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _is_blank(fn: ast.FunctionDef) -> bool:
    return any(isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n)
               for n in ast.walk(fn))


def test_the_core_pieces_are_graded():
    numbers = {p.name[:2] for p in EXERCISES}
    missing = {n: what for n, what in CORE.items() if n not in numbers}
    assert not missing, f"no graded exercise for {missing}"
    assert set(grade.available()) == numbers, "every exercise file needs lessons/grading/exNN.py"


@pytest.mark.parametrize("path", EXERCISES, ids=_ids(EXERCISES))
def test_solution_passes_the_grader(path: Path):
    results = grade.grade(path.name[:2], solution=True)
    failed = [f"{name}: {message}" for name, status, message, _ in results if status != "ok"]
    assert not failed, f"the worked solution of {path.name} fails its own grader:\n" + \
        "\n".join(failed)


@pytest.mark.parametrize("path", EXERCISES, ids=_ids(EXERCISES))
def test_every_blank_fails_with_a_clear_message(path: Path):
    blanks = {name for name, fn in _functions(path).items() if _is_blank(fn)}
    assert blanks, f"{path.name} has no blank to fill in"
    results = {name: (status, message) for name, status, message, _ in
               grade.grade(path.name[:2])}
    for name in blanks:
        assert name in results, f"{path.name}: the blank {name} is not graded"
        assert results[name] == ("blank", f"not yet implemented: {name}"), (
            f"{path.name}: the blank {name} should report 'not yet implemented: {name}', "
            f"got {results[name]}")
    for name, (status, message) in results.items():
        if name not in blanks:
            assert status == "ok", f"{path.name}: the given function {name} fails: {message}"


@pytest.mark.parametrize("path", EXERCISES, ids=_ids(EXERCISES))
def test_exercise_and_solution_agree_on_the_functions(path: Path):
    """Same functions, signatures and docstrings; the solution has no blanks; hints exist."""
    solution = SOLUTIONS / path.name
    assert solution.is_file(), f"{path.name} has no worked solution in {SOLUTIONS}"
    ex, sol = _functions(path), _functions(solution)
    assert list(ex) == list(sol), f"{path.name}: functions {list(ex)} vs solution {list(sol)}"
    for name in ex:
        assert ast.unparse(ex[name].args) == ast.unparse(sol[name].args), \
            f"{path.name}: {name} has another signature in the solution"
        assert ast.get_docstring(ex[name]) == ast.get_docstring(sol[name]), \
            f"{path.name}: {name}'s docstring differs from the solution's"
        assert not _is_blank(sol[name]), f"solution {path.name}: {name} is still a blank"
    for check in __import__(f"grading.ex{path.name[:2]}", fromlist=["CHECKS"]).CHECKS:
        assert check.hints, f"{path.name}: {check.name} has no hints"


def test_a_wrong_answer_names_the_tensor_and_its_error(tmp_path):
    src = (SOLUTIONS / "03_lstm_cell.py").read_text(encoding="utf-8")
    planted = src.replace('"W_hh": cache["h_prev"].T @ da', '"W_hh": cache["h_prev"].T @ da * 1.1')
    assert planted != src
    wrong = tmp_path / "03_lstm_cell.py"
    wrong.write_text(planted, encoding="utf-8")
    results = {name: (status, message) for name, status, message, _ in
               grade.grade("03", path=wrong)}
    assert results["lstm_step_forward"][0] == "ok"
    status, message = results["lstm_step_backward"]
    assert status == "wrong" and "dW_hh" in message and "worst error" in message, message


def test_an_exception_in_the_learners_code_says_where(tmp_path):
    src = (SOLUTIONS / "06_latent_variable.py").read_text(encoding="utf-8")
    broken = tmp_path / "06.py"
    broken.write_text(src.replace("return mu + np.exp(s / 2) * eps", "return mu + sigma * eps"),
                      encoding="utf-8")
    results = {name: (status, message) for name, status, message, _ in
               grade.grade("06", path=broken)}
    status, message = results["reparameterize"]
    assert status == "error" and "NameError" in message and "06.py" in message, message


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    return subprocess.run([sys.executable, str(LESSONS_DIR / "grade.py"), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_grade_command_line():
    blank = _cli("05", "--hint")
    assert blank.returncode == 1, blank.stderr
    assert "not yet implemented: reverse_index" in blank.stdout and "hint 1:" in blank.stdout
    assert "hint 2:" not in blank.stdout
    solved = _cli("05", "--solution")
    assert solved.returncode == 0 and "3 of 3 correct" in solved.stdout, solved.stdout
    listing = _cli()
    assert listing.returncode == 0 and "03" in listing.stdout
    bad = _cli("99")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in bad.stderr
