"""Prompt inputs: the prototype's JSON list, JSON Lines, plain text, or one string; validated.

Every problem is reported as a :class:`BadPromptsError` naming the prompt and the fix, before any
model is loaded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import BadPromptsError

SINGLE_PROMPT_ID = "single_prompt"
_PROBE_ID = re.compile(r"^probe_\d+_(?P<concept>.+)$")


@dataclass(frozen=True)
class Prompt:
    """One prompt to dump.

    Attributes:
        id: unique id, the prototype's ``probe_id`` (e.g. ``probe_1_Austin`` or ``seed_prompt``).
        text: the raw prompt text; BOS is added by the tokenizer step, never written here.
        concept: the concept token this probe varies (e.g. ``"Austin"``), if known.
        concept_type: ``entity`` / ``attribute`` / ``relationship``, if given.
    """

    id: str
    text: str
    concept: str | None = None
    concept_type: str | None = None

    def to_dict(self) -> dict[str, str]:
        d = {"id": self.id, "text": self.text}
        if self.concept is not None:
            d["concept"] = self.concept
        if self.concept_type is not None:
            d["concept_type"] = self.concept_type
        return d


def concept_from_id(prompt_id: str) -> str | None:
    """The concept encoded in a prototype id ``probe_<n>_<Concept_Words>`` ("Concept Words")."""
    m = _PROBE_ID.match(prompt_id)
    return m.group("concept").replace("_", " ") if m else None


def load_prompts(path: str | Path) -> list[Prompt]:
    """Read prompts from ``.json`` (list of ``{"id","text"}``), ``.jsonl`` or plain text.

    Plain text has one prompt per non-empty line, with ids ``line_<n>`` (1-based line number).
    """
    p = Path(path)
    if not p.is_file():
        raise BadPromptsError(f"prompt file {p} does not exist or is not a file: check the path")
    try:
        raw = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadPromptsError(f"cannot read prompt file {p} ({e}): it must be UTF-8 text") from None
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BadPromptsError(
                f"{p} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                'expected a list like [{"id": "seed_prompt", "text": "..."}]'
            ) from None
        if isinstance(data, dict) and isinstance(data.get("prompts"), list):
            data = data["prompts"]
        if not isinstance(data, list):
            raise BadPromptsError(
                f'{p} must hold a JSON list of {{"id": ..., "text": ...}} objects, '
                f"not a {type(data).__name__}"
            )
        items = [(f"item {i}", item) for i, item in enumerate(data)]
    elif suffix == ".jsonl":
        items = []
        for n, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise BadPromptsError(
                    f"{p} line {n} is not valid JSON ({e.msg}); each line must be one "
                    '{"id": ..., "text": ...} object'
                ) from None
    else:
        items = [
            (f"line {n}", {"id": f"line_{n}", "text": line})
            for n, line in enumerate(raw.splitlines(), start=1)
            if line.strip()
        ]
    prompts = [_parse_item(p, where, item) for where, item in items]
    validate_prompts(prompts, source=str(p))
    return prompts


def _parse_item(path: Path, where: str, item: object) -> Prompt:
    if not isinstance(item, dict):
        raise BadPromptsError(
            f'{path} {where} is a {type(item).__name__}, expected {{"id": ..., "text": ...}}'
        )
    pid, text = item.get("id", item.get("probe_id")), item.get("text")
    if pid is None:
        raise BadPromptsError(f'{path} {where} has no "id": give every prompt a unique id')
    if isinstance(pid, int) and not isinstance(pid, bool):
        pid = str(pid)
    if not isinstance(pid, str) or not pid.strip():
        raise BadPromptsError(f'{path} {where}: "id" must be a non-empty string, got {pid!r}')
    if not isinstance(text, str):
        raise BadPromptsError(
            f'prompt {pid!r} ({path} {where}): "text" must be a string, got {type(text).__name__}'
        )
    concept = item.get("concept")
    concept_type = item.get("concept_type")
    for key, val in (("concept", concept), ("concept_type", concept_type)):
        if val is not None and not isinstance(val, str):
            raise BadPromptsError(f'prompt {pid!r}: "{key}" must be a string when given')
    return Prompt(pid, text, concept, concept_type)


def validate_prompts(prompts: list[Prompt], source: str = "prompts") -> None:
    """Reject an empty list, empty or whitespace-only texts and duplicate ids."""
    if not prompts:
        raise BadPromptsError(f"{source} holds no prompts: add at least one")
    seen: set[str] = set()
    for pr in prompts:
        if pr.id in seen:
            raise BadPromptsError(f"{source}: duplicate prompt id {pr.id!r}; ids must be unique")
        seen.add(pr.id)
        if not pr.text.strip():
            raise BadPromptsError(
                f"{source}: prompt {pr.id!r} has empty text; remove it or fill it"
            )


def single_prompt(text: str) -> list[Prompt]:
    """The ``--single_prompt`` input: one prompt with id ``single_prompt``."""
    prompts = [Prompt(SINGLE_PROMPT_ID, text)]
    validate_prompts(prompts, source="--single_prompt")
    return prompts
