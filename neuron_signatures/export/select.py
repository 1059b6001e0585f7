"""Which neurons of an atlas an export writes: ``--neurons`` ids, ``--layers`` ranges, or all.

1. ``--neurons L17/N345,17:346`` parses each id with :func:`neuron_signatures.neurons.parse_neuron`
   (the one parser every entry point shares) against the model's shape, then checks that its
   layer is one the atlas holds.
2. ``--layers 0-5`` or ``3,7`` picks every neuron of those layers: a layer named alone must be in
   the atlas, a range keeps the atlas's layers inside it (and must hold one).
3. Neither: every neuron of every layer of the atlas. Both: ``--neurons`` limited to ``--layers``.

The result is sorted by (layer, index), without duplicates, so exports write in a stable order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import BadArgumentError
from ..neurons import parse_neuron_list

if TYPE_CHECKING:
    from ..atlas import Atlas


def _atlas_layers(layers: str, atlas: Atlas) -> list[int]:
    from ..neurons import parse_layers

    picked = parse_layers(layers)
    if picked is None:  # "all"
        return list(atlas.layers)
    # A layer named alone must be in the atlas; a range keeps the atlas's layers inside it.
    singles = {int(p) for p in layers.split(",") if p.strip().isdigit()}
    bad = [v for v in picked if not 0 <= v < atlas.n_layers] + sorted(singles - set(atlas.layers))
    kept = sorted(set(picked) & set(atlas.layers))
    if bad or not kept:
        what = f"layer {bad[0]} is" if bad else "no layer of it is"
        raise BadArgumentError(
            f"--layers {layers!r}: {what} not in the atlas {atlas.root} (its layers: "
            f"{_ranges(atlas.layers)})"
        )
    return kept


def parse_neurons(spec: str | None, layers: str | None, atlas: Atlas) -> list[tuple[int, int]]:
    """The ``(layer, index)`` pairs to export, sorted, without duplicates.

    Raises:
        BadArgumentError: an id is malformed or out of range, a layer is not in the atlas, or the
            selection is empty.
    """
    keep = _atlas_layers(layers, atlas) if layers is not None else list(atlas.layers)
    if spec is None:
        return [(layer, n) for layer in keep for n in range(atlas.d_mlp)]
    out: set[tuple[int, int]] = set()
    for nid in parse_neuron_list(spec, atlas.n_layers, atlas.d_mlp, what="--neurons"):
        if nid.layer not in atlas.layers:
            raise BadArgumentError(
                f"--neurons {nid}: layer {nid.layer} is not in the atlas {atlas.root} (its "
                f"layers: {_ranges(atlas.layers)}; neurons 0-{atlas.d_mlp - 1})"
            )
        if nid.layer in keep:
            out.add((nid.layer, nid.index))
    if not out:
        raise BadArgumentError(
            f"--neurons {spec!r} has no neuron in --layers {layers!r}: widen one of them"
        )
    return sorted(out)


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``0-2,5``."""
    out: list[str] = []
    for v in sorted(values):
        if out and v == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        else:
            out.append(str(v))
    return ",".join(out)
