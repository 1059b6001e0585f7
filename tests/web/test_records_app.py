"""The NeuronRecord page through ``AppTest``: OpenAI-style files written by hand, our export of a
real atlas, the URL, bad folders; and ``neuron-signatures app --neuron_records``."""

from __future__ import annotations

import argparse
import html as htmllib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.commands.app import streamlit_command
from neuron_signatures.export.neuron_record import export_neuron_records
from neuron_signatures.web import APP_SCRIPT
from tests.cli_run import run_cli

TIMEOUT = 60
# OpenAI's convention (fast_dataclasses.dumps = orjson.dumps of the dataclasses): the class name
# first in every object, compact, UTF-8 as is, NaN as null. Bucket 2 holds markup-like tokens.
HAND = (
    '{"dataclass_name":"NeuronRecord","neuron_id":{"dataclass_name":"NeuronId","layer_index":3,'
    '"neuron_index":17},"random_sample":[{"dataclass_name":"ActivationRecord","tokens":["a"," b"],'
    '"activations":[0.0,0.25]}],"random_sample_by_quantile":[[{"dataclass_name":"ActivationRecord",'
    '"tokens":["low"],"activations":[-0.5]}],[{"dataclass_name":"ActivationRecord","tokens":'
    '["<script>x</script>"," &amp;"],"activations":[1.5,null]}]],"quantile_boundaries":[0.125],'
    '"mean":0.0625,"variance":0.5,"skewness":null,"kurtosis":12.75,'
    '"most_positive_activation_records":[{"dataclass_name":"ActivationRecord","tokens":'
    '[" The"," capital"," Austin"],"activations":[0.0,2.0,7.25]},{"dataclass_name":'
    '"ActivationRecord","tokens":[" Texas"],"activations":[3.5]}]}'
)


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    import streamlit as st

    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


@pytest.fixture
def hand_folder(tmp_path: Path) -> Path:
    for layer, neuron in [(3, 17), (3, 2), (5, 0)]:
        path = tmp_path / "E" / str(layer) / f"{neuron}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HAND.replace('"layer_index":3', f'"layer_index":{layer}').replace(
            '"neuron_index":17', f'"neuron_index":{neuron}'), encoding="utf-8")  # fmt: skip
    return tmp_path / "E"


def start(folder: Path | str, **query: object) -> AppTest:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    at.query_params["neuron_records"] = str(folder)
    for k, v in query.items():
        at.query_params[k] = str(v)
    return at.run()


def page_html(at: AppTest) -> str:
    return "\n".join(h.value for h in at.html)


def cells(fragment: str) -> list[tuple[str, str]]:
    """``(token text, activation)`` of every heatmap cell, in order."""
    found = re.findall(r'title="ctx_idx=\d+ \| token_id=-1 \| token=(.*?) \| activation=(\S+)"',
                       fragment)  # fmt: skip
    return [(htmllib.unescape(t), a) for t, a in found]


def test_openai_style_record_shows_every_part(hand_folder: Path) -> None:
    at = start(hand_folder, layer=3, neuron=17)
    assert not at.exception, [e.value for e in at.exception]
    assert [s.value for s in at.subheader] == ["L3/N17"]
    assert (at.query_params["layer"], at.query_params["neuron"]) == ("3", "17")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"mean": "0.0625", "variance": "0.5", "skewness": "n/a",
                       "kurtosis": "12.75", "max |top activation|": "7.25"}  # fmt: skip
    top, bucket_hi, bucket_lo, sample = (h.value for h in at.html)
    assert cells(top) == [(" The", "+0.000000"), (" capital", "+2.000000"),
                          (" Austin", "+7.250000"), (" Texas", "+3.500000")]  # fmt: skip
    assert "#1 | max +7.25 on &#x27; Austin&#x27; | 3 tokens" in top
    assert top.count("nsh-max") == 3  # CSS rule + one outlined max per record
    # the highest bucket first; a null activation shows n/a; markup is escaped
    assert cells(bucket_hi) == [("<script>x</script>", "+1.500000"), (" &amp;", "n/a")]
    assert "<script>x" not in bucket_hi
    assert cells(bucket_lo) == [("low", "-0.500000")]
    assert cells(sample) == [("a", "+0.000000"), (" b", "+0.250000")]
    labels = [m.value for m in at.markdown]
    assert "**bucket 2 of 2: 0.125 – inf** (1 records)" in labels
    assert "**bucket 1 of 2: -inf – 0.125** (1 records)" in labels


def test_sidebar_lists_only_the_folder_neurons(hand_folder: Path) -> None:
    at = start(hand_folder)
    assert [s.value for s in at.subheader] == ["L3/N2"]  # first layer, first neuron
    layer, neuron = at.sidebar.selectbox
    assert layer.options == ["3", "5"] and neuron.options == ["2", "17"]
    layer.set_value(5).run()
    assert [s.value for s in at.subheader] == ["L5/N0"]
    assert (at.query_params["layer"], at.query_params["neuron"]) == ("5", "0")


def test_url_neuron_without_a_file_says_so(hand_folder: Path) -> None:
    at = start(hand_folder, layer=3, neuron=4)
    assert not at.exception
    assert [e.value for e in at.sidebar.error] == [f"{hand_folder} has no record of L3/N4"]
    assert [s.value for s in at.subheader] == ["L3/N2"]


def test_folder_without_records_is_one_error(tmp_path: Path) -> None:
    at = start(tmp_path)
    assert not at.exception and not at.subheader
    assert len(at.error) == 1 and "holds no NeuronRecord files" in at.error[0].value


def test_our_export_of_a_real_atlas(web_atlas: Path, tmp_path: Path) -> None:
    atlas = open_atlas(web_atlas)
    export_neuron_records(atlas, [(1, 3), (2, 5)], tmp_path / "E")
    at = start(tmp_path / "E", layer=1, neuron=3)
    assert not at.exception, [e.value for e in at.exception]
    rec = atlas.neuron(1, 3)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["mean"] == f"{rec.stats.mean:.4g}"
    assert metrics["variance"] == f"{rec.stats.variance:.4g}"
    assert metrics["kurtosis"] == f"{rec.stats.kurtosis:.4g}"
    top = cells(at.html[0].value)
    windows = list(dict.fromkeys(ex.window for ex in rec.top))
    first = next(ex for ex in rec.top if ex.window == windows[0])
    assert [t for t, _ in top[: len(first.tokens) - 1]] == [
        t.replace("\u2581", " ") for t in first.tokens[1:]
    ]
    heads = [m.value for m in at.markdown]
    assert f"#### Random sample by quantile ({len(rec.intervals)} buckets)" in heads


def test_cli_checks_the_folder_and_passes_it_on(
    tmp_path: Path, hand_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run_cli(capsys, "app", "--neuron_records", str(tmp_path / "none"), "--no_browser")
    assert rc == 2 and err.count("\n") == 1 and "does not exist" in err
    args = argparse.Namespace(
        port=8600, address="localhost", runs_root=".", run_dir=None, atlas=None,
        neuron_records=str(hand_folder), no_browser=True,
    )  # fmt: skip
    cmd = streamlit_command(args, headless=True)
    assert cmd[cmd.index("--neuron_records") + 1] == str(hand_folder.resolve())
