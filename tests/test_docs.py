"""The documentation site's generated reference, its links to tests, and the install files.

``make docs`` builds the site with ``mkdocs build --strict`` (broken links and anchors fail);
these tests check what the build cannot: that the command reference covers every command and flag
with help, that every command has a page, that the validation table names tests that exist, and
that the version files agree with ``pyproject.toml``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "hooks/cli_reference.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## `([\w-]+)` \{#[\w-]+\}$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_cli_reference_covers_every_command_and_flag() -> None:
    from neuron_signatures.cli import build_parser

    text = hook().render_cli_reference()
    sections = _sections(text)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sections) == set(sub.choices), set(sub.choices) ^ set(sections)
    for name, p in sub.choices.items():
        for action in p._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in sections[name], f"{name} {flag} missing from the reference"
    assert "| `--version` |" in text


def _fake_command(monkeypatch: pytest.MonkeyPatch, help_text: str, flag_help: str | None) -> None:
    import neuron_signatures.cli as cli

    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--frob", type=int, help=flag_help)

    fake = SimpleNamespace(
        NAME="frob", HELP=help_text, ORDER=99, add_arguments=add_arguments, run=lambda a: 0
    )
    real = cli.command_modules
    monkeypatch.setattr(cli, "command_modules", lambda: [*real(), fake])


def test_a_flag_without_help_stops_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = hook()
    _fake_command(monkeypatch, "frobnicate", "how much")
    assert "| `--frob FROB` | how much |" in mod.render_cli_reference()
    monkeypatch.undo()
    _fake_command(monkeypatch, "frobnicate", None)
    with pytest.raises(mod.MissingHelpError, match="frob: --frob has no help"):
        mod.render_cli_reference()


def test_a_command_without_help_stops_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = hook()
    _fake_command(monkeypatch, "", "how much")
    with pytest.raises(mod.MissingHelpError, match="frob has no help"):
        mod.render_cli_reference()


def test_every_command_has_a_page_that_runs_it() -> None:
    from neuron_signatures.cli import command_modules

    pages = {p: p.read_text() for p in DOCS.rglob("*.md")}
    for mod in command_modules():
        pattern = re.compile(rf"^neuron-signatures {mod.NAME}\b", re.M)
        hits = [p for p, text in pages.items() if pattern.search(text)]
        assert hits, f"no page of docs/ has a line `neuron-signatures {mod.NAME} ...`"


def test_tests_named_in_the_docs_exist() -> None:
    named = set()
    for page in DOCS.rglob("*.md"):
        named |= set(re.findall(r"(tests/[\w/]+\.py)::(test_\w+)", page.read_text()))
    assert len(named) >= 50, named
    missing = []
    for path, test in sorted(named):
        f = ROOT / path
        if not f.is_file() or not re.search(rf"^\s*(async )?def {test}\(", f.read_text(), re.M):
            missing.append(f"{path}::{test}")
    assert not missing, f"the docs name tests that do not exist: {missing}"


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def _pins(name: str) -> dict[str, Version]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            pkg, _, version = line.partition("==")
            pins[_canon(pkg)] = Version(version)
    return pins


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pyproject_declares_ranges_and_the_lock_satisfies_them() -> None:
    lock = _pins("constraints.txt")
    for req in _requirements():
        ops = {s.operator for s in req.specifier}
        if _canon(req.name) != "neuron-explainer":  # one release exists: 0.0.1
            assert ops & {">=", "~="} and "==" not in ops, f"{req} should be a range"
        assert _canon(req.name) in lock, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(lock[_canon(req.name)]), f"{req} vs the lock"
    assert lock["torch"] == Version("2.13.0")


def test_lowest_constraints_are_pyprojects_lower_bounds() -> None:
    lowest = _pins("constraints-lowest.txt")
    expected = {}
    for req in _requirements():
        lower = [s.version for s in req.specifier if s.operator in (">=", "==")]
        expected[_canon(req.name)] = Version(lower[0])
    assert lowest == expected


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
