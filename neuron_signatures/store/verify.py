"""Check that a run folder is complete and intact (after copying it between machines)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunFormatError
from .manifest import ACTIVATIONS_DIR, read_manifest, sha256_file
from .progress import leftover_temps, read_progress
from .reader import open_run
from .safetensors_np import SafetensorsFile


@dataclass
class VerifyReport:
    """What ``verify`` found: ``problems`` is empty when the run is whole.

    Attributes:
        n_written: shards whose files match their recorded size and sha256.
        incomplete: the dump did not finish (``problems[0]`` says how far it got).
        notes: harmless findings, such as temporary files a killed dump left.
    """

    run_dir: Path
    n_prompts: int = 0
    n_tokens: int = 0
    n_shards: int = 0
    n_written: int = 0
    bytes: int = 0
    incomplete: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_run(run_dir: str | Path, check_hashes: bool = True) -> VerifyReport:
    """Check completeness, shard sizes, sha256 checksums, tensor shapes and prompt offsets.

    An interrupted run is checked as far as it got: the shards its progress log records must be
    whole; the others are counted as not written yet, not as corrupt.
    """
    path = Path(run_dir)
    manifest = read_manifest(path)
    report = VerifyReport(path, n_prompts=len(manifest["prompts"]))
    if int(manifest.get("format_version", 1)) == 1 or "shards" not in manifest:
        _verify_prototype(report)
        return report
    from ..estimate import human_bytes

    for tmp, size in leftover_temps(path):
        report.notes.append(
            f"temporary file {tmp.relative_to(path)} ({human_bytes(size)}) was left by a killed "
            "dump: `dump --resume` removes it (or delete it)"
        )
    shards = manifest["shards"]
    report.n_shards = len(shards)
    report.incomplete = not manifest.get("complete")
    recorded = {i: (s.get("bytes"), s.get("sha256")) for i, s in enumerate(shards)}
    if report.incomplete:
        recorded = {i: v for i, v in recorded.items() if v[1]}
        recorded.update((i, v) for i, v in read_progress(path).items() if 0 <= i < len(shards))
    for i in sorted(recorded):
        problem = _check_shard(path, manifest, i, *recorded[i], check_hashes=check_hashes)
        if problem:
            report.problems.append(problem)
        else:
            report.n_written += 1
        f = path / ACTIVATIONS_DIR / shards[i]["file"]
        report.bytes += f.stat().st_size if f.is_file() else 0
    if report.incomplete:
        report.problems.insert(
            0,
            f"incomplete run: {report.n_written} of {report.n_shards} shards written; finish it "
            "with the same dump command plus --resume",
        )
    report.n_tokens = sum(len(p["token_ids"]) for p in manifest["prompts"])
    return report


def _check_shard(
    path: Path, manifest: dict[str, Any], i: int, size: Any, digest: Any, *, check_hashes: bool
) -> str | None:
    """The first thing wrong with shard ``i`` (recorded ``size`` and ``digest``), or None."""
    entry = manifest["shards"][i]
    f = path / ACTIVATIONS_DIR / entry["file"]
    if not f.is_file():
        return f"shard {entry['file']} is missing"
    if size is None or not digest:
        return f"shard {entry['file']} has no recorded size and sha256 in the manifest"
    if f.stat().st_size != size:
        return f"shard {entry['file']}: {f.stat().st_size} bytes, {size} recorded"
    if check_hashes and sha256_file(f) != digest:
        return f"shard {entry['file']}: sha256 mismatch (corrupted copy)"
    st = SafetensorsFile(f)
    rows = int(entry["n_tokens"])
    for layer in manifest.get("layers", range(int(manifest["n_layers"]))):
        name = f"layer_{layer}"
        if name not in st.names:
            return f"shard {entry['file']} has no tensor {name}"
        if st.shape(name) != (rows, int(manifest["d_mlp"])):
            return f"shard {entry['file']} {name}: shape {st.shape(name)}"
    for p in manifest["prompts"]:
        if int(p["shard"]) == i and int(p["shard_offset"]) + len(p["token_ids"]) > rows:
            return f"prompt {p['probe_id']} runs past the end of shard {i}"
    return None


def _verify_prototype(report: VerifyReport) -> None:
    """A prototype run (manifest + activations.pt): every prompt's tensor has its rows."""
    try:
        run = open_run(report.run_dir)
        for p in run.prompts:
            shape = run.prompt_acts(p.index).shape
            if shape[1] != p.seq_len:
                report.problems.append(
                    f"prompt {p.probe_id}: {shape[1]} rows, expected {p.seq_len}"
                )
            report.n_tokens += p.seq_len
    except RunFormatError as e:
        report.problems.append(str(e))
