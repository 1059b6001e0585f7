"""The "Search explanations" panel through ``AppTest``: the table equals the library's query,
rows link to neuron pages, errors and a missing explanations folder show as one message."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from streamlit.testing.v1 import AppTest

from neuron_signatures.index import IndexQuery, search_neurons
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD


def panel(atlas: str) -> None:
    from neuron_signatures.atlas import open_atlas
    from neuron_signatures.web.explainsearch import explanations_panel

    explanations_panel(open_atlas(atlas))


def start(atlas: Path) -> AppTest:
    return AppTest.from_function(panel, args=(str(atlas),), default_timeout=60).run()


def test_search_table_matches_library(explained: Path) -> None:
    at = start(explained)
    at.text_input(key="expl_text").input(PLANTED_WORD).run()
    at.number_input(key="expl_min").set_value(0.9).run()
    assert not at.exception and not at.error
    df = at.dataframe[0].value
    want = search_neurons(explained, IndexQuery(text=PLANTED_WORD, min_score=0.9, limit=100))
    assert list(df["neuron"]) == [r.id for r in want.rows]
    assert df["neuron"].iloc[0] == f"L{PLANTED_LAYER}/N{PLANTED_NEURON}"
    link = parse_qs(urlparse(df["page"].iloc[0]).query)
    assert link["layer"] == [str(PLANTED_LAYER)] and link["neuron"] == [str(PLANTED_NEURON)]
    assert Path(link["atlas"][0]) == explained.resolve()


def test_bad_layers_and_no_explanations(
    explained: Path, planted_atlas: Path, tmp_path: Path
) -> None:
    at = start(explained)
    at.text_input(key="expl_layers").input("40").run()
    assert not at.exception and "layer 40 is not in atlas" in at.error[0].value
    root = tmp_path / "A"
    shutil.copytree(planted_atlas, root)
    at = start(root)
    assert not at.exception and "neuron-signatures explain --atlas" in at.info[0].value


def test_the_app_reaches_the_panel(explained: Path) -> None:
    """The atlas app lists the page beside the neuron and the searches, and draws the panel."""
    from streamlit import config

    from neuron_signatures.web import APP_SCRIPT
    from neuron_signatures.web.atlasnav import EXPLAIN_PAGE

    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=60)
    at.query_params["atlas"] = str(explained)
    before = config.get_option("server.address")
    config.set_option("server.address", "localhost")  # any folder opens
    try:
        at.run()
        at.radio(key="atlas_page").set_value(EXPLAIN_PAGE).run()
        at.text_input(key="expl_text").input(PLANTED_WORD).run()
    finally:
        config.set_option("server.address", before)
    assert not at.exception and not at.error, [e.value for e in at.exception]
    assert at.dataframe[0].value["neuron"].iloc[0] == f"L{PLANTED_LAYER}/N{PLANTED_NEURON}"
