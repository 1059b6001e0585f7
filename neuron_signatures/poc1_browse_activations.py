"""Prototype command line: ``python -m neuron_signatures.poc1_browse_activations ...`` = ``browse``.

Same flags as the prototype (``--run_dir --prompt_idx --layer --neuron --ctx_idx --window
--all_tokens``), now on the Textual browser.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(sys.argv[1:] if argv is None else argv, prog_command="browse")


if __name__ == "__main__":
    sys.exit(main())
