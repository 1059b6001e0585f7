"""Prototype command line: ``python -m neuron_signatures.poc2_analyze_run ...`` = ``analyze``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(sys.argv[1:] if argv is None else argv, prog_command="analyze")


if __name__ == "__main__":
    sys.exit(main())
