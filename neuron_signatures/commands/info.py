"""``models``, ``estimate`` and ``verify``: small commands that need no forward pass."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the known models and which one is embedded"
ORDER = 50


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p


def run(args: argparse.Namespace) -> int:
    from ..models import EMBEDDED_NAME, KNOWN_MODELS, cache_root

    print(f"{'name':<22} {'layers':>6} {'d_mlp':>6}  note")
    for m in KNOWN_MODELS.values():
        print(f"{m.name:<22} {m.n_layers:>6} {m.d_mlp:>6}  {m.note}")
    print(
        f"\nAlso accepted: any hub id, a local HF folder, a .gguf file. "
        f"Converted models are cached in {cache_root()} ({EMBEDDED_NAME} after its first use)."
    )
    return 0
