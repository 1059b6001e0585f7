"""In-process CLI runs for tests: exit code, stdout and stderr of ``main([...])``."""

from __future__ import annotations

import pytest

from neuron_signatures.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as e:  # argparse
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err
