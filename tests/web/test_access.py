"""A web app reachable from other machines opens only folders under ``--runs_root``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from neuron_signatures.errors import BadArgumentError
from neuron_signatures.web import APP_SCRIPT
from neuron_signatures.web.access import check_inside, is_local_address
from tests.web.test_app import TIMEOUT, shown


@pytest.mark.parametrize(
    ("address", "local"),
    [("localhost", True), ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True),
     ("[::1]", True), ("0.0.0.0", False), ("::", False), ("", False), (None, False),
     ("192.168.1.5", False), ("myhost.example", False)],
)  # fmt: skip
def test_is_local_address(address: str | None, local: bool) -> None:
    assert is_local_address(address) is local


def test_check_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "link").symlink_to(tmp_path / "secret")
    assert check_inside(root / "a" / "b", root) == (root / "a" / "b").resolve()
    assert check_inside(root, root) == root.resolve()
    for bad in (tmp_path / "secret", root / ".." / "secret", root / "link", Path("/etc")):
        with pytest.raises(BadArgumentError, match="outside the runs root"):
            check_inside(bad, root)
    with pytest.raises(BadArgumentError, match="outside"):
        check_inside(tmp_path / "rootx", root)  # a sibling whose name starts like the root


@pytest.fixture
def shared_root(
    web_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    server_address: Callable[[str | None], None],
) -> Path:  # fmt: skip
    """The page as served on 0.0.0.0 from ``tmp_path/root`` (the default --runs_root: the
    current folder), holding one run, ``demo``; ``tmp_path/outside`` holds another."""
    root = tmp_path / "root"
    shutil.copytree(web_run, root / "demo")
    shutil.copytree(web_run, tmp_path / "outside")
    monkeypatch.chdir(root)
    server_address("0.0.0.0")
    return root


def page(run_dir: str | Path | None = None) -> AppTest:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    if run_dir is not None:
        at.query_params["run_dir"] = str(run_dir)
    return at.run()


def errors(at: AppTest) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def test_shared_app_opens_runs_under_the_root(shared_root: Path) -> None:
    at = page()  # the run found under the root
    assert at.text_input(key="run_dir").value == str(Path(".") / "demo")
    assert shown(at) == (1, 3) and not errors(at)
    assert at.text_input(key="runs_root").disabled  # the root cannot be changed from the page


@pytest.mark.parametrize("where", ["outside", "../outside", "symlink", "/"])
def test_shared_app_refuses_run_dirs_outside_the_root(shared_root: Path, where: str) -> None:
    if where == "symlink":
        (shared_root / "link").symlink_to(shared_root.parent / "outside")
        where = str(shared_root / "link")
    elif where == "outside":
        where = str(shared_root.parent / "outside")
    at = page()
    at.text_input(key="run_dir").set_value(where).run()
    assert any("outside the runs root" in e for e in errors(at)), errors(at)
    assert not [s for s in at.subheader if s.value.startswith("Selected neuron")]
    at = page(shared_root.parent / "outside")  # through the URL too
    assert any("run_dir" in e and "outside the runs root" in e for e in errors(at))


def test_shared_app_refuses_analysis_dirs_outside_the_root(shared_root: Path) -> None:
    at = page(shared_root / "demo")
    assert shown(at) == (1, 3)
    at.text_input(key="analysis_dir").set_value(str(shared_root.parent / "outside")).run()
    assert any("analysis_dir" in e and "outside the runs root" in e for e in errors(at))


def test_local_app_opens_any_folder(shared_root: Path, server_address) -> None:  # type: ignore[no-untyped-def]
    server_address("127.0.0.1")
    at = page(shared_root.parent / "outside")
    assert shown(at) == (1, 3) and not errors(at)
    assert not at.text_input(key="runs_root").disabled
