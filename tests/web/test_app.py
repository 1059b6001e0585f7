"""The Streamlit page through ``AppTest``: selection modes, navigation, normalisation, bad runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from neuron_signatures.web import APP_SCRIPT
from tests.web.fixtures import INFLUENCE_ROWS, PEAK_ROWS, make_run

TIMEOUT = 60
# value 2.0 at ctx 2 of seed_prompt, neuron (1, 3): global max 8 -> r = 0.25, own max 4 -> r = 0.5
# (see test_heatmap: 0.05 + 0.95 log10(1 + 9 r)); with BOS (50) in the max: r = 0.04 -> 0.1768620
ALPHA_GLOBAL, ALPHA_PER_PROMPT, ALPHA_WITH_BOS = 0.5363, 0.7533, 0.1769


def start(run_dir: Path | str | None, script: Path = APP_SCRIPT) -> AppTest:
    at = AppTest.from_file(str(script), default_timeout=TIMEOUT)
    if run_dir is not None:
        at.query_params["run_dir"] = str(run_dir)
    return at.run()


def shown(at: AppTest) -> tuple[int, int]:
    assert not at.exception, [e.value for e in at.exception]
    text = next(s.value for s in at.subheader if s.value.startswith("Selected neuron"))
    m = re.search(r"layer (\d+), neuron (\d+)", text)
    assert m is not None
    return int(m.group(1)), int(m.group(2))


def press(at: AppTest, label: str) -> tuple[int, int]:
    at.button(key=f"nav_{label}").click().run()
    return shown(at)


def html(at: AppTest) -> str:
    return "\n".join(h.value for h in at.html)


def test_default_influence_mode_and_navigation(web_run: Path) -> None:
    at = start(web_run)
    assert at.selectbox(key="mode").value == "influence_json"
    order = [(lay, n) for lay, n, _, _ in INFLUENCE_ROWS]
    assert shown(at) == order[0]
    assert any("kept 5/5" in c.value for c in at.sidebar.caption)
    assert press(at, "Prev") == order[0]  # clamped at the start
    assert press(at, "Next") == order[1]
    assert press(at, "Next") == order[2]
    assert press(at, "+10") == order[-1]  # clamped at the end
    assert press(at, "Prev") == order[-2]
    assert press(at, "-10") == order[0]


def test_peaks_mode_default_and_navigation(peaks_run: Path) -> None:
    at = start(peaks_run)
    assert at.selectbox(key="mode").value == "peaks_top_neurons"
    assert at.selectbox(key="mode").options == ["manual", "peaks_top_neurons"]
    assert shown(at) == PEAK_ROWS[0]
    assert press(at, "Next") == PEAK_ROWS[1]
    assert press(at, "+10") == PEAK_ROWS[-1]
    assert press(at, "-10") == PEAK_ROWS[0]


def test_manual_mode_navigation_crosses_layers(bare_run: Path) -> None:
    at = start(bare_run)
    assert at.selectbox(key="mode").value == "manual"
    assert shown(at) == (0, 0)
    assert press(at, "Prev") == (0, 0)
    assert press(at, "Next") == (0, 1)
    assert press(at, "+10") == (1, 3)  # flat 1 + 10 = 11 = layer 1, neuron 3 (d_mlp 8)
    assert press(at, "-10") == (0, 1)
    at.number_input(key="neuron_in").set_value(7).run()
    assert shown(at) == (0, 7)
    assert press(at, "Next") == (1, 0)
    at.selectbox(key="layer_in").set_value(1).run()
    assert press(at, "+10") == (1, 7)


def test_switching_modes_keeps_the_neuron(web_run: Path) -> None:
    at = start(web_run)
    press(at, "Next")  # (0, 2)
    at.selectbox(key="mode").set_value("manual").run()
    assert shown(at) == (0, 2)
    at.number_input(key="neuron_in").set_value(5).run()
    at.selectbox(key="mode").set_value("peaks_top_neurons").run()
    assert shown(at) == (0, 5)  # in the peaks list, so it stays selected


def test_influence_filter_keeps_file_order(web_run: Path) -> None:
    at = start(web_run)
    at.selectbox(key="infl_metric").set_value("influence").run()
    slider = next(s for s in at.sidebar.slider if s.key and s.key.startswith("infl_range"))
    slider.set_value((0.0, 0.5)).run()
    assert any("kept 3/5" in c.value for c in at.sidebar.caption)
    labels = at.selectbox(key="cand_pick").options
    assert [re.search(r"L\d+ N\d+", s).group() for s in labels] == ["L1 N3", "L1 N7", "L1 N1"]
    at.number_input(key="top_k_limit").set_value(1).run()
    assert any("kept 3/5 (showing the first 1)" in c.value for c in at.sidebar.caption)


def select_points(at: AppTest, customdata: list[list[int]]) -> tuple[int, int]:
    """Send a plotly selection event for the influence chart, as the browser would.

    AppTest has no API for chart selections, so this appends the chart's widget state to the
    widget states of the next run (AppTest internals: ``_tree``, ``_run``).
    """
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    chart = next(c for c in at.get("plotly_chart") if c.key == "infl_chart")
    points = [{"customdata": cd, "x": 0, "y": 0} for cd in customdata]
    event = {"selection": {"points": points, "point_indices": [], "box": [], "lasso": []}}
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=chart.proto.id, string_value=json.dumps(event)))
    at._run(states)
    return shown(at)


def test_chart_click_and_lasso_select_a_neuron(web_run: Path) -> None:
    at = start(web_run)
    order = [(lay, n) for lay, n, _, _ in INFLUENCE_ROWS]
    assert select_points(at, [[3, *order[3]]]) == order[3]  # click: candidate 3
    assert press(at, "Next") == order[4]  # the old selection does not pull it back
    assert select_points(at, [[2, *order[2]], [1, *order[1]]]) == order[1]  # lasso: best rank


def test_write_scores_match_the_selected_file(web_run: Path) -> None:
    at = start(web_run)  # influence file -> its own write scores, not the newer file's
    assert "Austin" in html(at) and "Sacramento" not in html(at)
    assert "&lt;b&gt;bold&lt;/b&gt;" in html(at)
    at.selectbox(key="mode").set_value("peaks_top_neurons").run()
    assert shown(at) == (1, 3) and "Sacramento" in html(at)


def test_neuron_card(web_run: Path) -> None:
    at = start(web_run)
    card = html(at) + " ".join(c.value for c in at.caption)
    assert "Texas detector" in card and "causal check: real delta +0.48" in card
    assert at.metric[0].value == "8"  # peak |act| without BOS
    sig = at.dataframe[0].value  # the signature's per-probe peaks
    assert sig.to_dict("list") == {
        "probe": ["seed_prompt", "probe_texas"],
        "per_probe_peaks": [-4.0, 8.0],
    }
    assert not at.warning
    assert len(at.get("download_button")) == 3
    assert len(at.get("plotly_chart")) == 3  # overlay, single prompt, influence distribution


@pytest.mark.parametrize(
    ("norm", "exclude_bos", "alpha"),
    [
        ("global", True, ALPHA_GLOBAL),
        ("per_prompt", True, ALPHA_PER_PROMPT),
        ("global", False, ALPHA_WITH_BOS),
    ],
)
def test_normalisation_applies_to_every_heatmap(
    web_run: Path, norm: str, exclude_bos: bool, alpha: float
) -> None:
    at = start(web_run)
    at.selectbox(key="hm_norm").set_value(norm)
    at.checkbox(key="hm_bos").set_value(exclude_bos)
    at.run()
    shown(at)
    found = re.findall(r'activation=\+2\.000000"[^>]*rgba\(52,211,153,([0-9.]+)\)', html(at))
    assert len(found) == 2  # the token heatmap and the stacked heatmap
    assert [float(a) for a in found] == [pytest.approx(alpha, abs=1e-4)] * 2


def test_prompts_are_escaped_and_ordered(web_run: Path) -> None:
    at = start(web_run)
    body = html(at)
    assert "&lt;script&gt;" in body and "<script>" not in body
    at.selectbox(key="hm_order").set_value("peak").run()
    stacked = next(
        h.value for h in at.html if "nsh-stacked" in h.value and 'nsh-prompt"' in h.value
    )
    labels = re.findall(r'<div class="nsh-prompt">([^<]*)</div>', stacked)
    assert labels == ["probe_texas", "seed_prompt", "probe_xss", "probe_short"]


def test_widgets_never_reload_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuron_signatures.web import runview

    run_dir = make_run(tmp_path / "fresh")
    calls = []
    real = runview.open_run
    monkeypatch.setattr(runview, "open_run", lambda d: calls.append(d) or real(d))
    at = start(run_dir)
    press(at, "Next")
    at.selectbox(key="hm_norm").set_value("per_prompt").run()
    at.selectbox(key="mode").set_value("manual").run()
    shown(at)
    assert len(calls) == 1


def _broken(tmp_path: Path, web_run: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "nope"
    if kind == "empty":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    run = tmp_path / kind
    shutil.copytree(web_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    if kind == "bad_json":
        (run / "manifest.json").write_text("{not json")
    elif kind == "shard_missing":
        next((run / "activations").glob("*.safetensors")).unlink()
    else:
        edits = {"future": {"format_version": 99}, "incomplete": {"complete": False}}
        manifest.update(edits.get(kind, {}))
        if kind == "no_d_mlp":
            del manifest["d_mlp"]
        (run / "manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("empty", "no manifest.json"),
        ("bad_json", "unreadable"),
        ("future", "format_version 99"),
        ("incomplete", "unfinished dump"),
        ("no_d_mlp", "malformed"),
        ("shard_missing", "is missing"),
    ],
)
def test_bad_run_folders_show_a_message(
    tmp_path: Path, web_run: Path, kind: str, message: str
) -> None:
    at = start(_broken(tmp_path, web_run, kind))
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and message in errors[0], errors


def test_no_run_given_lists_runs_root(tmp_path: Path, web_run: Path, bare_run: Path) -> None:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    at.session_state["runs_root"] = str(tmp_path / "none")
    at.run()
    assert not at.exception and any("Pick a run folder" in i.value for i in at.info)
    root = tmp_path / "root"
    shutil.copytree(web_run, root / "demo")
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    at.session_state["runs_root"] = str(root)
    at.run()
    assert at.text_input(key="run_dir").value == str(root / "demo")
    assert shown(at) == (1, 3)
    shutil.copytree(bare_run, root / "other")
    at.text_input(key="runs_root").set_value(str(root)).run()  # rescan
    at.selectbox(key="run_pick").set_value(str(root / "other")).run()
    assert at.text_input(key="run_dir").value == str(root / "other")
    # no analysis there: manual mode, on the same neuron (to compare runs)
    assert at.selectbox(key="mode").value == "manual" and shown(at) == (1, 3)


def test_prototype_entry_point(web_run: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "neuron_signatures" / "eda_streamlit.py"
    assert shown(start(web_run, script)) == (1, 3)


def test_chart_titles_and_legends_show_prompt_ids_as_text(tmp_path: Path) -> None:
    from neuron_signatures.store.build import write_run
    from tests.web.fixtures import prompts_and_acts

    prompts, acts = prompts_and_acts()
    prompts[0]["probe_id"], prompts[1]["probe_id"] = "<b>x</b>", "<script>alert(1)</script>"
    write_run(tmp_path / "run", prompts, acts)
    at = start(tmp_path / "run")
    shown(at)
    specs = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    overlay, single = specs["overlay_chart"], specs["prompt_chart"]
    names = [t.get("name") for t in overlay["data"]]
    assert "&lt;b&gt;x&lt;/b&gt;" in names and "&lt;script&gt;alert(1)&lt;/script&gt;" in names
    assert single["layout"]["title"]["text"] == "Activation vs ctx_idx (&lt;b&gt;x&lt;/b&gt;)"
    for spec in specs.values():
        assert "<b>x" not in json.dumps(spec) and "<script>" not in json.dumps(spec)


def test_every_neuron_of_a_demo_shaped_influence_file(tmp_path: Path) -> None:
    """Records ranked past ``--verify_top`` hold ``real_delta: None``: every ranked neuron shows
    its record (and the causal check only when it ran), every unranked neuron opens too."""
    from tests.web.fixtures import (
        DEMO_D_MLP,
        DEMO_LAYERS,
        DEMO_RANKED,
        demo_causal_line,
        demo_influence_order,
        make_demo_influence_run,
    )

    at = start(make_demo_influence_run(tmp_path / "run"))
    order = demo_influence_order()
    assert any(f"kept {DEMO_RANKED}/{DEMO_RANKED}" in c.value for c in at.sidebar.caption)
    for i, nid in enumerate(order):
        at.selectbox(key="cand_pick").set_value(i).run()
        assert shown(at) == nid
        captions = [c.value for c in at.caption]
        assert any(c.startswith(f"influence rank #{i + 1}: influence ") for c in captions)
        causal = [c for c in captions if "causal check" in c]
        want = demo_causal_line(i + 1)
        assert causal == ([want] if want else []), (i + 1, causal)
        assert "None" not in " ".join(captions)
    ranked = set(order)
    at.selectbox(key="mode").set_value("manual").run()
    unranked = [(lay, n) for lay in range(DEMO_LAYERS) for n in range(DEMO_D_MLP)]
    unranked = [nid for nid in unranked if nid not in ranked]
    assert unranked
    for lay, n in unranked:
        at.selectbox(key="layer_in").set_value(lay)
        at.number_input(key="neuron_in").set_value(n).run()
        assert shown(at) == (lay, n)
        assert not any("influence rank" in c.value for c in at.caption)
