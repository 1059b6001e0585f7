"""What a resumed dump must share with the run it finishes, setting by setting.

A shard's bytes depend on the prompts, the model, the layers, the dtypes, the batching (padding
changes nothing, but the shard plan does) and on *how* they were computed: the device and the
library versions (a GPU in bf16 and a CPU in fp32 give different numbers). ``--resume`` refuses a
run whose settings differ and names the first one that does, with both values.

The environment settings (device, versions) only matter when something is left to compute: a
finished, intact run copied to another machine is reported complete, not refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class Setting:
    """One thing a resume must match: how to show it, where the manifest keeps it."""

    label: str
    path: tuple[str, ...]
    environment: bool = False

    def get(self, manifest: dict[str, Any]) -> Any:
        value: Any = manifest
        for key in self.path:
            if not isinstance(value, dict) or key not in value:
                return _MISSING
            value = value[key]
        if self.path == ("prompts",):
            return [(p["probe_id"], p["text"], p["token_ids"]) for p in value]
        if self.path == ("shards",):
            return [(s["file"], s["n_tokens"]) for s in value]
        return value


SETTINGS = (
    Setting("format_version", ("format_version",)),
    Setting("--model_name", ("model_name",)),
    Setting("the model (source, architecture, revision)", ("model",)),
    Setting("the model's n_layers", ("n_layers",)),
    Setting("the model's d_mlp", ("d_mlp",)),
    Setting("--layers", ("layers",)),
    Setting("--save_dtype", ("save_dtype",)),
    Setting("the model dtype (--model_dtype)", ("model_dtype",)),
    Setting("BOS (--no_prepend_bos)", ("prepend_bos",)),
    Setting("--max_seq_len", ("capture", "max_seq_len")),
    Setting("--truncate", ("capture", "truncate")),
    Setting("--batch_size", ("capture", "batch_size")),
    Setting("--max_batch_tokens", ("capture", "max_batch_tokens")),
    Setting("the prompts", ("prompts",)),
    Setting("the shard plan", ("shards",)),
    Setting("--device", ("run_device",), environment=True),
    Setting("the torch version", ("versions", "torch"), environment=True),
    Setting("the transformers version", ("versions", "transformers"), environment=True),
    Setting("the transformer-lens version", ("versions", "transformer-lens"), environment=True),
)


def fingerprint(manifest: dict[str, Any]) -> str:
    """Hash of every :data:`SETTINGS` value (recorded; resume compares the values themselves)."""
    key = {s.label: s.get(manifest) for s in SETTINGS if s.get(manifest) is not _MISSING}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def settings_mismatch(
    old: dict[str, Any], new: dict[str, Any], *, environment: bool = True
) -> str | None:
    """The first setting that differs between a run and a resume, as ``"X differs (run: a, now:
    b)"``; ``None`` when they agree. Settings missing on either side (a check made before the
    model loads, an older manifest) are skipped.
    """
    for s in SETTINGS:
        if s.environment and not environment:
            continue
        a, b = s.get(old), s.get(new)
        if a is _MISSING or b is _MISSING or a == b:
            continue
        if s.path == ("prompts",):
            return f"the prompts differ ({_prompts_diff(a, b)})"
        if s.path == ("shards",):
            return f"the shard plan differs (run: {len(a)} shards, now: {len(b)})"
        return f"{s.label} differs (run: {_show(a)}, now: {_show(b)})"
    return None


def _prompts_diff(a: list[tuple], b: list[tuple]) -> str:
    if len(a) != len(b):
        return f"run: {len(a)} prompts, now: {len(b)}"
    for (id_a, text_a, ids_a), (id_b, text_b, ids_b) in zip(a, b, strict=True):
        if id_a != id_b:
            return f"run: id {id_a!r}, now: {id_b!r}"
        if text_a != text_b:
            return f"the text of {id_a!r}"
        if ids_a != ids_b:
            return f"the tokens of {id_a!r}: other tokenizer, --max_seq_len or --truncate"
    return "order"


def _show(value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return ",".join(map(str, value)) if len(value) <= 8 else f"{value[0]}..{value[-1]}"
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
