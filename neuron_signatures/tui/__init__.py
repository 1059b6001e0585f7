"""Terminal browser of a run or an atlas (Textual): reads through the store and the atlas reader.

``BrowserApp(BrowserState(open_run(run_dir)))`` browses a run;
``AtlasApp(AtlasState(open_atlas(path)), run=...)`` shows an atlas's neurons (and the run's prompts
on ``e``). ``neuron-signatures browse`` and ``python -m neuron_signatures.poc1_browse_activations``
build them from flags. Importing this package never imports torch or transformers.
"""

from .app import AtlasApp, BrowserApp
from .atlas_state import AtlasState
from .ranking import RankingCursor
from .state import BrowserState, NeuronStats, neuron_stats

__all__ = [
    "AtlasApp",
    "AtlasState",
    "BrowserApp",
    "BrowserState",
    "NeuronStats",
    "RankingCursor",
    "neuron_stats",
]
