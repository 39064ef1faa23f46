"""The documentation names only things that exist.

Every test the docs cite (``tests/x.py``, ``tests/x.py::test_name``, a bare
``test_x.py::test_name`` of a section about one folder, or ``::test_name`` and a lone
``test_name`` in backticks, continuing the file named just before) must be a file and a
test function in it; every source path
(``agentsession/...py``, ``benchmarks/...py``, ``examples/...``) must exist; every dotted
``agentsession.x.Name`` must import. So a renamed module or test cannot leave the docs
pointing at nothing.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

DOCS = sorted(
    path
    for path in [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "benchmarks" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
    if path.exists()
)

#: A repository path: ``tests/...``, ``agentsession/...``, ``benchmarks/...``,
#: ``examples/...``, optionally followed by ``::test_name`` (or ``::Class::test_name``).
_PATH = re.compile(
    r"(?<![\w/.~$%-])((?:tests|agentsession|benchmarks|examples)/[\w/.-]*[\w/])"
    r"((?:::\w+)+)?"
)
#: A bare test file (its folder given by the surrounding text), with an optional test.
_BARE = re.compile(r"(?<![\w/.-])(test_\w+\.py)((?:::\w+)+)?")
#: ``::test_name``, or a lone `` `test_name` ``, continuing the file named just before it.
_CONTINUED = re.compile(r"(?<![\w:])::(test_\w+)|`(test_\w+)`")
#: A dotted name in agentsession's namespace, in backticks.
_DOTTED = re.compile(r"`(agentsession(?:\.\w+)+)")


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@functools.cache
def _tests_in(path: Path) -> frozenset[str]:
    """``name`` and ``Class::name`` for every test function in a test file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}::{item.name}")
    return frozenset(names)


def _bare_file(name: str) -> Path | None:
    """The one file of that name under ``tests/`` (``None`` if none or several)."""
    found = [path for path in TESTS.rglob(name) if "__pycache__" not in path.parts]
    return found[0] if len(found) == 1 else None


def _references() -> list[tuple[str, int, str, str, str]]:
    """``(doc, line, kind, target, test)`` for every reference in the docs."""
    refs: list[tuple[str, int, str, str, str]] = []
    for doc in DOCS:
        last_file = ""
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            spans: list[tuple[int, str, str, str]] = []
            for match in _PATH.finditer(line):
                target, tests = match.group(1), (match.group(2) or "")[2:]
                spans.append((match.start(), "path", target, tests))
            for match in _BARE.finditer(line):
                spans.append((match.start(), "bare", match.group(1), (match.group(2) or "")[2:]))
            for match in _CONTINUED.finditer(line):
                test = match.group(1) or match.group(2)
                spans.append((match.start(), "continued", "", test))
            for match in _DOTTED.finditer(line):
                spans.append((match.start(), "dotted", match.group(1), ""))
            for _, kind, target, test in sorted(spans):
                if kind == "continued":
                    target = last_file
                elif target.endswith(".py") and (kind == "bare" or target.startswith("tests/")):
                    last_file = target
                refs.append((_relative(doc), number, kind, target, test))
    return refs


REFERENCES = _references()


def test_the_docs_hold_references() -> None:
    # Guards the patterns above: a regex that matched nothing would pass every check.
    kinds = {kind for _, _, kind, _, _ in REFERENCES}
    assert {"path", "bare", "continued", "dotted"} <= kinds, kinds


@pytest.mark.parametrize(
    ("doc", "line", "kind", "target", "test"),
    REFERENCES,
    ids=[
        f"{doc}:{line}:{target}{'::' + test if test else ''}"
        for doc, line, _, target, test in REFERENCES
    ],
)
def test_every_reference_resolves(doc: str, line: int, kind: str, target: str, test: str) -> None:
    where = f"{doc}:{line}"
    if kind == "dotted":
        _check_dotted(target, where)
        return
    if kind == "path":
        path = ROOT / target
    else:
        assert target, f"{where}: ::{test} follows no test file"
        path = ROOT / target if "/" in target else _bare_file(target)  # type: ignore[assignment]
        assert path is not None, f"{where}: {target} is not exactly one file under tests/"
    assert path.exists(), f"{where}: {target} does not exist"
    if test:
        assert path.suffix == ".py", f"{where}: {target}::{test} is not in a Python file"
        assert test in _tests_in(path), f"{where}: {_relative(path)} has no test {test}"


def _check_dotted(name: str, where: str) -> None:
    """``name`` is a module of agentsession or an attribute of one."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            assert hasattr(value, attribute), f"{where}: {name} does not exist"
            value = getattr(value, attribute)
        return
    raise AssertionError(f"{where}: {name} does not exist")


#: An environment variable of agentsession's own.
_VARIABLE = re.compile(r"\bAGENTSESSION_[A-Z][A-Z_]*[A-Z]\b")


def _variables_in(paths: list[Path]) -> set[str]:
    return {name for path in paths for name in _VARIABLE.findall(path.read_text("utf-8"))}


def test_every_environment_variable_the_docs_and_examples_name_is_read_by_the_code() -> None:
    """One name for one setting: an example reading a variable of its own for the database
    file, beside the command line's ``AGENTSESSION_DB``, would be a second name. The
    tests that start the examples' servers only pass variables on, so they do not count.
    """
    code = _variables_in(
        [
            path
            for folder in ("agentsession", "benchmarks", "tests")
            for path in (ROOT / folder).rglob("*.py")
            if "__pycache__" not in path.parts and "integrations" not in path.parts
        ]
    )
    examples = [path for path in (ROOT / "examples").rglob("*") if path.suffix in (".py", ".md")]
    named = _variables_in([*DOCS, *examples])
    assert "AGENTSESSION_DB" in named
    assert named <= code, f"named in docs or examples but read nowhere: {sorted(named - code)}"
