"""Prototype entry point: ``streamlit run neuron_signatures/eda_streamlit.py`` opens the web app.

Same page as ``neuron-signatures app`` (see :mod:`neuron_signatures.web.app`); pick the run folder
in the sidebar, or pass it: ``streamlit run neuron_signatures/eda_streamlit.py -- --run_dir R``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts this package folder first on sys.path, where `tokens`, `models`, ... would
# shadow same-named top-level modules; import the package from its parent folder instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

from neuron_signatures.web.app import main  # noqa: E402

if __name__ == "__main__":
    main()
