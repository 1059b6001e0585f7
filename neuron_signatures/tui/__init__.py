"""Terminal browser of a run (Textual): reads the run through the store, rankings via analysis.

``BrowserApp(BrowserState(open_run(run_dir)))`` is the whole API; ``neuron-signatures browse``
and ``python -m neuron_signatures.poc1_browse_activations`` build it from flags. Importing this
package never imports torch or transformers.
"""

from .app import BrowserApp
from .ranking import RankingCursor
from .state import BrowserState, NeuronStats, neuron_stats

__all__ = ["BrowserApp", "BrowserState", "NeuronStats", "RankingCursor", "neuron_stats"]
