"""The static HTML export: self-contained, escaped, the atlas's values, the web app's colours, the
probe run's panel, and a real headless Chromium render."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuron_signatures.atlas import Atlas, open_atlas
from neuron_signatures.errors import BadArgumentError
from neuron_signatures.export import html_parts
from neuron_signatures.export.html import export_html
from neuron_signatures.tokens import token_display
from tests.web.browser import CHROMIUM, chromium, console_messages

PICKED = [(1, 3), (0, 5), (2, 10)]
SHORT = 2  # tokens either side shown before a click: the tiny atlas's windows (12) get cut
XSS = '<script>document.title="pwned";console.error("xss")</script>'
VOID = {"meta", "br", "input", "img", "link", "hr", "wbr", "source", "area", "base", "col"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium "
    "(apt-get update && apt-get install -y chromium)",
)


@dataclasses.dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = dataclasses.field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.walk()

    def find(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [
            n
            for n in self.walk()
            if (tag is None or n.tag == tag) and (cls is None or cls in n.classes())
        ]


class TreeBuilder(HTMLParser):
    """A small DOM from the standard library's parser (tags, attributes, text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]
        self.mismatched: list[str] = []  # end tags that close something else

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if self.stack[-1].tag != tag:
            self.mismatched.append(tag)
        while len(self.stack) > 1 and self.stack.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(path: Path) -> Node:
    """The page's tree; every element must be closed, in order."""
    b = TreeBuilder()
    b.feed(path.read_text(encoding="utf-8"))
    assert not b.mismatched and b.stack == [b.root], (b.mismatched, b.stack[-1].tag)
    return b.root


@pytest.fixture(scope="module")
def atlas(export_atlas: Path) -> Atlas:
    return open_atlas(export_atlas)


@pytest.fixture(scope="module")
def page(atlas: Atlas, tmp_path_factory: pytest.TempPathFactory) -> Path:
    calls: list[int] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(html_parts, "CONTEXT", SHORT)
        out = export_html(atlas, PICKED, tmp_path_factory.mktemp("html") / "neurons.html",
                          progress=calls.append)  # fmt: skip
    assert sum(calls) == len(PICKED)
    return out


def test_self_contained(page: Path) -> None:
    """No URL, no external resource: inline style and script only, links to anchors."""
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    root = parse(page)
    ids = {n.attrs["id"] for n in root.walk() if "id" in n.attrs}
    for n in root.walk():
        assert "src" not in n.attrs and n.tag not in ("link", "img", "iframe", "object", "embed")
        if "href" in n.attrs:
            assert n.attrs["href"][0] == "#" and n.attrs["href"][1:] in ids
        if n.tag == "label":  # a row opens with its own hidden checkbox
            assert n.attrs["for"] in ids
    assert len(root.find("script")) == 1 and len(root.find("style")) == 1
    assert [n.attrs["href"] for n in root.find("nav")[0].find("a")] == [
        "#L0-N5", "#L1-N3", "#L2-N10"
    ]  # fmt: skip


def section(root: Node, layer: int, index: int) -> Node:
    (sec,) = [n for n in root.find("section") if n.attrs.get("id") == f"L{layer}-N{index}"]
    return sec


def cells_of(ex: Node) -> list[Node]:
    """The token cells of an example's whole window (those outside the context are hidden)."""
    return ex.find(cls="t")


def test_values_equal_the_atlas(page: Path, atlas: Atlas) -> None:
    root = parse(page)
    for layer, index in PICKED:
        rec, sec = atlas.neuron(layer, index), section(root, layer, index)
        for dd in sec.find("dd"):
            assert float(dd.attrs["data-v"]) == getattr(rec.stats, dd.attrs["data-stat"])
        for kind, examples in (("top", rec.top), ("bottom", rec.bottom)):
            rows = next(n for n in sec.find(cls="examples") if kind in n.classes())
            shown = [n for n in rows.children if isinstance(n, Node)]
            assert len(shown) == len(examples)
            for node, ex in zip(shown, examples, strict=True):
                cells = cells_of(node)
                assert [float(c.attrs["data-v"]) for c in cells] == ex.acts
                assert [c.text() for c in cells] == [token_display(t) for t in ex.tokens]
                (mark,) = [c for c in cells if "mark" in c.classes()]
                assert int(mark.attrs["data-ctx"]) == ex.position
                near = [abs(int(c.attrs["data-ctx"]) - ex.position) <= SHORT for c in cells]
                assert ["o" not in c.classes() for c in cells] == near  # the rest: on click
                assert float(node.find(cls="lbl")[0].attrs["data-value"]) == ex.value
        check_intervals(sec, rec)
        check_logits(sec, rec)
        counts = rec.histogram_counts
        nz = [i for i, c in enumerate(counts) if c]
        bars = [int(b.attrs["data-count"]) for b in sec.find("rect", "bar")]
        assert bars == counts[nz[0] : nz[-1] + 1]


def check_intervals(sec: Node, rec: Any) -> None:
    labels = sec.find(cls="iv")
    assert len(labels) == len(rec.intervals)
    for node, iv in zip(labels, reversed(rec.intervals), strict=True):
        assert node.text() == iv.label
        got = (float(node.attrs[k]) for k in ("data-lo", "data-hi", "data-fraction"))
        assert tuple(got) == (iv.lo, iv.hi, iv.fraction)
    samples = [ex for iv in reversed(rec.intervals) for ex in iv.samples]
    rows = [n for n in sec.find(cls="intervals")[0].children if isinstance(n, Node)]
    rows = [n for n in rows if "ex" in n.classes()]
    assert len(rows) == len(samples)
    for node, ex in zip(rows, samples, strict=True):
        valued = [c for c in cells_of(node) if "data-v" in c.attrs]  # only the sample's token
        assert [(int(c.attrs["data-ctx"]), float(c.attrs["data-v"])) for c in valued] == [
            (ex.position, ex.value)
        ]


def check_logits(sec: Node, rec: Any) -> None:
    for cls, scores in (("pos", rec.write_top), ("neg", rec.write_bottom)):
        table = next(t for t in sec.find("table", "logits") if cls in t.classes())
        rows = table.find("tr")
        assert [r.find("td")[0].text() for r in rows] == [token_display(w.token) for w in scores]
        assert [float(r.find("td")[1].attrs["data-v"]) for r in rows] == [w.score for w in scores]


def test_colours_are_the_heat_rule_of_the_web_app(page: Path, atlas: Atlas) -> None:
    """Every cell of the top examples: opacity 0.05 + 0.95 log10(1 + 9|v|/scale), green >= 0,
    orange below, exactly as the web app's cells of the same example."""
    from neuron_signatures.web.examples import example_html
    from neuron_signatures.web.heatmap import HeatmapConfig

    rec = atlas.neuron(1, 3)
    scale = abs(rec.top[0].value)
    shown = [n for n in section(parse(page), 1, 3).find(cls="examples")[0].children]
    for node, ex in zip(shown, rec.top, strict=True):
        assert isinstance(node, Node)
        styles = [c.attrs["style"] for c in cells_of(node)]
        for v, style in zip(ex.acts, styles, strict=True):
            r = min(abs(v) / scale, 1.0)
            op = 0.0 if abs(v) <= 5e-5 else 0.05 + math.log10(1 + 9 * r) * 0.95
            rgb = "251,146,60" if v < 0 else "52,211,153"
            assert style == f"background:rgba({rgb},{op:.4f})"
        web = TreeBuilder()
        web.feed(example_html(ex, scale, HeatmapConfig(), context=100))
        assert [c.attrs["style"] for c in web.root.find(cls="nsh-cell")] == styles


def markup_atlas(atlas: Atlas, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the atlas return markup in a token, a write-score token and document metadata."""
    real = atlas.neuron

    def neuron(layer: int, index: int, n_intervals: int = 10) -> Any:
        rec = real(layer, index, n_intervals)
        ex = rec.top[0]
        tokens = list(ex.tokens)
        tokens[ex.position] = XSS
        rec.top[0] = dataclasses.replace(ex, tokens=tokens, meta={"topic": XSS})
        rec.write_top[0] = dataclasses.replace(rec.write_top[0], token=XSS)
        return rec

    monkeypatch.setattr(atlas, "neuron", neuron)


def test_tokens_are_escaped(atlas: Atlas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    markup_atlas(atlas, monkeypatch)
    out = export_html(atlas, [(1, 3)], tmp_path / "x.html")
    text = out.read_text(encoding="utf-8")
    assert "<script>document" not in text
    root = parse(out)
    assert len(root.find("script")) == 1  # only the page's own
    mark = section(root, 1, 3).find(cls="mark")[0]  # top example #1, its own token
    assert mark.text() == XSS and XSS in mark.attrs["title"]
    assert XSS in section(root, 1, 3).find("table", "pos")[0].find("td")[0].text()


@needs_chromium
def test_renders_in_chromium_and_script_in_token_stays_text(
    atlas: Atlas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    markup_atlas(atlas, monkeypatch)
    monkeypatch.setattr(html_parts, "CONTEXT", SHORT)  # rows that open on a click
    out = export_html(atlas, PICKED, tmp_path / "neurons.html")
    shot = ARTIFACTS / "export_html.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    profile = tmp_path / "profile"
    dom = chromium(
        ["--window-size=1400,2600", "--dump-dom", f"--screenshot={shot}", out.as_uri()], profile
    )
    assert "<title>Neuron pages: tiny-gemma2</title>" in dom  # the token's script did not run
    assert "pwned" not in dom.split("</title>")[0]
    assert "&lt;script&gt;document.title" in dom  # shown as text
    for layer, index in PICKED:
        assert f'id="L{layer}-N{index}"' in dom
    recs = [atlas.neuron(layer, index) for layer, index in PICKED]
    n_marked = sum(len(r.top) + len(r.bottom) for r in recs)
    assert dom.count('class="t mark"') >= n_marked
    assert not console_messages(profile), console_messages(profile)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def matching_run(run_dir: Path, model_name: str) -> Path:
    """The web tests' hand-built run and analysis files, recorded as a run of ``model_name``."""
    from neuron_signatures.store.build import write_run
    from tests.web.fixtures import (
        prompts_and_acts,
        write_influence,
        write_peaks,
        write_signatures,
        write_write_scores,
    )

    prompts, acts = prompts_and_acts()
    write_run(run_dir, prompts, acts, model_name=model_name, prompts_per_shard=2)
    ad = run_dir / "analysis"
    ad.mkdir(exist_ok=True)
    for write in (write_peaks, write_influence, write_write_scores, write_signatures):
        write(ad)
    return run_dir


def test_probe_run_panel(atlas: Atlas, tmp_path: Path) -> None:
    run = matching_run(tmp_path / "run", atlas.model_name)
    out = export_html(atlas, [(1, 3), (0, 5), (2, 10)], tmp_path / "p.html", run_dir=run)
    root = parse(out)
    toc = root.find("nav")[0].text()
    assert "entity - Texas detector" in toc
    probe = section(root, 1, 3).find(cls="probe")[0].text()
    assert "Texas detector" in probe and "peaks on Texas in 2 probes" in probe
    assert "influence rank #1" in probe and "+0.5" in probe  # the influence file's record
    assert "causal check: real delta +0.48 vs predicted +0.5" in probe
    assert "Sacramento" in probe  # the newest write-score file wins, as in the web app
    assert "probe_texas" in probe and "8" in probe  # per-probe peaks
    assert "mean_peak_abs 5" in probe  # the peaks ranking's row
    other = section(root, 0, 5).find(cls="probe")[0].text()
    assert "influence rank #4" in other and "Texas detector" not in other
    assert "no signature, influence or write scores" in section(root, 2, 10).text()


def test_probe_run_panel_on_every_neuron_of_a_demo_shaped_influence_file(
    atlas: Atlas, tmp_path: Path
) -> None:
    """Influence records past ``--verify_top`` hold ``real_delta: None``: every atlas neuron's
    panel shows its record, the causal check only where it ran, and never "None"."""
    from tests.web.fixtures import demo_causal_line, demo_influence_order, make_demo_influence_run

    run = make_demo_influence_run(tmp_path / "run", atlas.model_name)
    rank = {nid: r + 1 for r, nid in enumerate(demo_influence_order())}
    every = [(layer, n) for layer in atlas.layers for n in range(atlas.d_mlp)]
    root = parse(export_html(atlas, every, tmp_path / "p.html", run_dir=run))
    seen = {"ranked": 0, "verified": 0, "unranked": 0}
    for layer, n in every:
        probe = section(root, layer, n).find(cls="probe")[0].text()
        assert "None" not in probe and "n/a" not in probe, probe
        r = rank.get((layer, n))
        if r is None:
            seen["unranked"] += 1
            assert "influence rank" not in probe and "causal check" not in probe
            continue
        seen["ranked"] += 1
        assert f"influence rank #{r} in " in probe
        want = demo_causal_line(r)
        seen["verified"] += want is not None
        if want is None:
            assert "causal check" not in probe, probe
        else:
            assert want in probe and probe.count("causal check") == 1
    assert all(seen.values()), seen


def test_run_of_another_model(atlas: Atlas, tmp_path: Path) -> None:
    run = matching_run(tmp_path / "run", "synthetic")
    with pytest.raises(BadArgumentError, match="is a run of 'synthetic'"):
        export_html(atlas, [(1, 3)], tmp_path / "p.html", run_dir=run)
    assert not (tmp_path / "p.html").exists()


def test_bad_inputs_and_failures_leave_no_file(
    atlas: Atlas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BadArgumentError, match="is a folder"):
        export_html(atlas, [(1, 3)], tmp_path)
    with pytest.raises(BadArgumentError, match="out of range"):
        export_html(atlas, [(1, 64)], tmp_path / "a.html")
    with pytest.raises(BadArgumentError, match="not in the atlas"):
        export_html(atlas, [(7, 1)], tmp_path / "a.html")

    def broken(layer: int, index: int, n_intervals: int = 10) -> Any:
        raise OSError("disk gone")

    monkeypatch.setattr(atlas, "neuron", broken)
    with pytest.raises(OSError):
        export_html(atlas, [(1, 3)], tmp_path / "a.html")
    assert list(tmp_path.iterdir()) == []  # no page, no temporary file


def test_empty_neuron_renders(
    atlas: Atlas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A neuron with no counted token (NaN statistics, no examples) still gives a valid page."""
    real = atlas.neuron

    def empty(layer: int, index: int, n_intervals: int = 10) -> Any:
        rec = real(layer, index, n_intervals)
        nan = float("nan")
        stats = dataclasses.replace(rec.stats, count=0, mean=nan, std=nan, min=nan, max=nan)
        zeros = [0] * len(rec.histogram_counts)
        return dataclasses.replace(rec, stats=stats, histogram_counts=zeros, top=[], bottom=[],
                                   intervals=[], write_top=[], write_bottom=[])  # fmt: skip

    monkeypatch.setattr(atlas, "neuron", empty)
    root = parse(export_html(atlas, [(0, 1)], tmp_path / "e.html"))
    text = section(root, 0, 1).text()
    assert "no tokens counted" in text and "none kept" in text and "no write scores" in text
    assert np.isnan(float(section(root, 0, 1).find("dd")[3].attrs["data-v"]))


def test_cli_run_of_another_model(
    export_atlas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuron_signatures.cli import main

    run = matching_run(tmp_path / "run", "synthetic")
    out = tmp_path / "p.html"
    rc = main(["export", "--atlas", str(export_atlas), "--format", "html", "--neurons", "L1/N3",
               "--out", str(out), "--run_dir", str(run), "--no_progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "is a run of 'synthetic'" in err
    assert not out.exists()
