"""Every command the README and the documentation pages show runs as written on the demo run.

The fenced blocks of ``README.md`` and of every page of ``docs/`` (in the order of the site's
navigation, ``mkdocs.yml``) are the documentation users copy from. This test extracts every
command line from them (``neuron-signatures ...``, ``python -m neuron_signatures...``, with
``\\`` continuations and ``# comments``) and every ``python`` block, and runs them in order, in a
folder laid out like a fresh clone after ``make demo``: ``docs/`` copied, ``runs/demo`` and
``atlases/demo`` built by the demo's own steps. A command that appears twice (a page repeating
what ``make demo`` or an earlier page ran) runs once. The embedded model is swapped for a tiny
random Gemma 3 model of its shape by pointing ``$NEURON_SIGNATURES_CACHE`` at a cache whose
converted ``gemma3-270m`` folder is that tiny model, so nothing else about the commands changes.

Rules:

* A block fenced as ``text`` is a synopsis or an illustration and is not run: use it for
  commands that need a GPU, a cluster, the network or files a reader brings
  (``--device cuda``, ``ray start``, ``hf:...``, ``my.jsonl``).
* A command that names a gated hub model, a GPU or a hub dataset (``google/``, ``cuda``,
  ``hf:``) cannot run offline on a CPU: it must either work (``estimate``) or end with the
  documented one-line error and exit code 2.
* Interactive commands (``app``, ``streamlit run``) are started elsewhere (tests/web); ``browse``
  runs with ``--screenshot`` so it renders once and exits.
* Shell globs in arguments are expanded as a shell would.
"""

from __future__ import annotations

import glob
import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.tiny_models import make_config, make_tokenizer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MKDOCS = ROOT / "mkdocs.yml"
GENERATED = {"reference/cli.md"}  # written at build time by docs/hooks/cli_reference.py
NAV_PAGE = re.compile(r"^\s*-\s*(?:[^:]+:\s*)?([\w/.-]+\.md)\s*$")
NEEDS_NETWORK_OR_GPU = ("google/", "cuda", "hf:", "ray://", "--engine ray")
NOT_RUN_HERE = ("neuron-signatures app", "streamlit run", " app --", "--help")
FENCE = re.compile(r"^```(\w*)\s*$")


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, in order."""
    blocks: list[tuple[str, str]] = []
    lang, body, inside = "", [], False
    for line in text.splitlines():
        m = FENCE.match(line.strip())
        if m and not inside:
            lang, body, inside = m.group(1), [], True
        elif line.strip() == "```" and inside:
            blocks.append((lang, "\n".join(body)))
            inside = False
        elif inside:
            body.append(line)
    return blocks


def commands_of(body: str) -> list[str]:
    """Command lines of a shell block, continuations joined and comments dropped."""
    out, cur = [], ""
    for raw in body.splitlines():
        line = raw.rstrip()
        cur = f"{cur} {line.strip()}" if cur else line.strip()
        if cur.endswith("\\"):
            cur = cur[:-1].rstrip()
            continue
        cmd = _strip_comment(cur)
        cur = ""
        if cmd.startswith(("neuron-signatures ", "python -m neuron_signatures")):
            out.append(cmd)
    return out


def _strip_comment(line: str) -> str:
    # A '#' outside quotes starts a comment (shlex's own rule).
    lex = shlex.shlex(line, posix=True, punctuation_chars=False)
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        words = list(lex)
    except ValueError:
        return line
    return shlex.join(words) if words else ""


def argv_of(cmd: str) -> list[str]:
    words = shlex.split(cmd)
    if words[0] == "neuron-signatures":
        words = words[1:]
    elif words[:2] == ["python", "-m"]:
        module = words[2]
        shim = {
            "neuron_signatures": [],
            "neuron_signatures.poc1_dump_activations": ["dump"],
            "neuron_signatures.poc2_analyze_run": ["analyze"],
            "neuron_signatures.poc1_browse_activations": ["browse"],
        }
        words = shim[module] + words[3:]
    expanded: list[str] = []
    for w in words:
        hits = sorted(glob.glob(w)) if any(c in w for c in "*?[") else []
        expanded.extend(hits or [w])
    if expanded and expanded[0] == "browse":
        expanded += ["--screenshot", "readme_browse.svg"]
    return expanded


def doc_pages() -> list[Path]:
    """The README, then every page of the site in the order of ``mkdocs.yml``'s nav."""
    pages = [README]
    for line in MKDOCS.read_text().splitlines():
        m = NAV_PAGE.match(line)
        if m and m.group(1) not in GENERATED:
            pages.append(ROOT / "docs" / m.group(1))
    return pages


def all_blocks() -> list[tuple[str, str, str]]:
    """``(page, language, body)`` of every fenced block of every page, in reading order."""
    out = []
    for page in doc_pages():
        name = str(page.relative_to(ROOT))
        out += [(name, lang, body) for lang, body in readme_blocks(page.read_text())]
    return out


def page_commands() -> dict[str, list[str]]:
    """Every command to run, by page in reading order, each once (the first time it is shown)."""
    seen = {_normalised(s) for s in DEMO_STEPS}
    out: dict[str, list[str]] = {}
    for page, lang, body in all_blocks():
        if lang in ("text", "python", "toml", "json"):
            continue
        for c in commands_of(body):
            key = _normalised(c)
            if any(s in c for s in NOT_RUN_HERE) or key in seen:
                continue
            seen.add(key)
            out.setdefault(page, []).append(c)
    return out


def all_readme_commands() -> list[str]:
    """Every command to run, in reading order, each once."""
    return [c for cmds in page_commands().values() for c in cmds]


def _normalised(cmd: str) -> str:
    words = argv_of(cmd) if cmd.startswith(("neuron-signatures", "python")) else shlex.split(cmd)
    return shlex.join(w for w in words if w != "--no_progress")


def python_blocks() -> list[tuple[str, str]]:
    return [(page, body) for page, lang, body in all_blocks() if lang == "python"]


def run_cli(argv: list[str]) -> int:
    from neuron_signatures.cli import main

    try:
        return main(argv)
    except SystemExit as e:  # argparse errors exit through SystemExit
        return int(e.code or 0)


DEMO_STEPS = [
    # The same steps as the Makefile's `demo` target (its write scores and signatures steps
    # are run where the tutorial shows them).
    "dump --prompts_json docs/probe_prompts_list.json --out_dir runs/demo --overwrite "
    "--no_progress",
    "analyze --run_dir runs/demo --top_k 50",
    "analyze --mode influence --run_dir runs/demo --prompt_id seed_prompt "
    "--influence_metric act_grad --target_mode next_token --target_token ' Austin' --verify_top 20",
    "atlas --out_dir atlases/demo --max_tokens 30000 --overwrite --no_progress",
    "explain --atlas atlases/demo --overwrite",
]


@pytest.fixture(scope="module")
def demo_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a fresh clone after ``make demo``, with the tiny model as the embedded one."""
    root = tmp_path_factory.mktemp("clone")
    shutil.copytree(ROOT / "docs", root / "docs")
    folder = root / ".cache" / "gemma3-270m"
    save_stand_in(folder)
    (folder / ".complete").write_text("tiny test model\n")
    return root


def save_stand_in(folder: Path) -> None:
    """A random Gemma 3 with the embedded model's shape (18 layers x 2048 neurons) but a tiny
    width and vocabulary, so the README's layer and neuron ids exist and it runs in seconds."""
    import torch
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(0)
    cfg = make_config("gemma3")
    cfg.num_hidden_layers, cfg.intermediate_size = 18, 2048
    cfg.layer_types = ["sliding_attention"] * 5 + ["full_attention"]
    cfg.layer_types = (cfg.layer_types * 3)[:18]
    model = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if "norm" in name:
                prm.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    make_tokenizer(folder)


@pytest.fixture()
def in_clone(demo_clone: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(demo_clone)
    monkeypatch.setenv("NEURON_SIGNATURES_CACHE", str(demo_clone / ".cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return demo_clone


def test_readme_has_commands() -> None:
    cmds = all_readme_commands()
    assert len(cmds) >= 10, cmds
    assert any(c.startswith("neuron-signatures dump") for c in cmds)
    pages = {page for page, lang, body in all_blocks() if commands_of(body)}
    assert "README.md" in pages and "docs/tutorial.md" in pages, pages


def test_every_nav_page_exists_and_every_page_is_in_the_nav() -> None:
    pages = doc_pages()[1:]
    assert len(pages) >= 20, pages
    missing = [str(p) for p in pages if not p.is_file()]
    assert not missing, f"pages named in mkdocs.yml's nav that do not exist: {missing}"
    on_disk = {p for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk <= set(pages), f"pages not in mkdocs.yml's nav: {on_disk - set(pages)}"


def test_repeated_commands_run_once() -> None:
    # The dedup must not drop a command that differs in anything but --no_progress.
    a = "neuron-signatures atlas --out_dir atlases/demo --max_tokens 30000 --overwrite"
    b = "neuron-signatures atlas --out_dir atlases/demo --max_tokens 3000 --overwrite"
    assert _normalised(a) == _normalised(a + " --no_progress")
    assert _normalised(a) != _normalised(b)
    assert _normalised(a).split()[0] == "atlas"


_DEMO_DONE: list[bool] = []


def _demo_steps() -> None:
    """``make demo``'s steps, once per clone (the first test that needs them runs them)."""
    if not _DEMO_DONE:
        for step in DEMO_STEPS:
            assert run_cli(shlex.split(step)) == 0, step
        _DEMO_DONE.append(True)


def test_demo_steps_run(in_clone: Path) -> None:
    _demo_steps()
    assert (in_clone / "atlases/demo/explanations/explanations.json").is_file()


@pytest.mark.parametrize("page", list(page_commands()))
def test_readme_commands_run_on_the_demo_run(
    page: str, in_clone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands of one page (pages run in reading order, on the same clone)."""
    _demo_steps()
    failures = []
    for cmd in page_commands()[page]:
        capsys.readouterr()
        rc = run_cli(argv_of(cmd))
        err = capsys.readouterr().err.strip()
        if any(s in cmd for s in NEEDS_NETWORK_OR_GPU):
            ok = rc == 0 or (rc == 2 and len(err.splitlines()) == 1 and "error" in err)
        else:
            ok = rc == 0
        if not ok:
            failures.append(f"{cmd}\n  -> exit {rc}: {err[-300:]}")
    assert not failures, f"commands of {page} that fail as written:\n" + "\n".join(failures)


def test_readme_python_blocks_run(in_clone: Path) -> None:
    _demo_steps()
    if not (in_clone / "exports/records").is_dir():
        argv = ["export", "--atlas", "atlases/demo", "--format", "neuron_record", "--layers", "1"]
        assert run_cli([*argv, "--out_dir", "exports/records", "--no_progress"]) == 0
    for page, body in python_blocks():
        exec(compile(body, page, "exec"), {})
