"""Check that a run folder is complete and intact (after copying it between machines)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RunFormatError
from .manifest import ACTIVATIONS_DIR, read_manifest
from .reader import open_run
from .safetensors_np import SafetensorsFile


@dataclass
class VerifyReport:
    """What ``verify`` found: ``problems`` is empty when the run is whole."""

    run_dir: Path
    n_prompts: int = 0
    n_tokens: int = 0
    n_shards: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_run(run_dir: str | Path, check_hashes: bool = True) -> VerifyReport:
    """Check completeness, shard sizes, sha256 checksums, tensor shapes and prompt offsets."""
    path = Path(run_dir)
    manifest = read_manifest(path)
    report = VerifyReport(path, n_prompts=len(manifest["prompts"]))
    if int(manifest.get("format_version", 1)) == 1 or "shards" not in manifest:
        try:
            run = open_run(path)
            for p in run.prompts:
                shape = run.prompt_acts(p.index).shape
                if shape[1] != p.seq_len:
                    report.problems.append(
                        f"prompt {p.probe_id}: {shape[1]} rows, expected {p.seq_len}"
                    )
                report.n_tokens += p.seq_len
        except RunFormatError as e:
            report.problems.append(str(e))
        return report
    if not manifest.get("complete"):
        report.problems.append(
            "the dump did not finish (complete is false): re-run it with --resume"
        )
    layers = manifest.get("layers", list(range(int(manifest["n_layers"]))))
    d_mlp = int(manifest["d_mlp"])
    report.n_shards = len(manifest["shards"])
    for i, entry in enumerate(manifest["shards"]):
        f = path / ACTIVATIONS_DIR / entry["file"]
        if not f.is_file():
            report.problems.append(f"shard {entry['file']} is missing")
            continue
        size = f.stat().st_size
        report.bytes += size
        if size != entry.get("bytes"):
            report.problems.append(
                f"shard {entry['file']}: {size} bytes, manifest says {entry.get('bytes')}"
            )
            continue
        if check_hashes and _sha256(f) != entry.get("sha256"):
            report.problems.append(f"shard {entry['file']}: sha256 mismatch (corrupted copy)")
            continue
        st = SafetensorsFile(f)
        for layer in layers:
            name = f"layer_{layer}"
            if name not in st.names:
                report.problems.append(f"shard {entry['file']} has no tensor {name}")
            elif st.shape(name) != (int(entry["n_tokens"]), d_mlp):
                report.problems.append(f"shard {entry['file']} {name}: shape {st.shape(name)}")
        rows = int(entry["n_tokens"])
        for p in manifest["prompts"]:
            if int(p["shard"]) == i and int(p["shard_offset"]) + len(p["token_ids"]) > rows:
                report.problems.append(f"prompt {p['probe_id']} runs past the end of shard {i}")
    report.n_tokens = sum(len(p["token_ids"]) for p in manifest["prompts"])
    return report


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
