"""Neuronpedia's bulk-import layout, transcribed from its own repository, and a validator.

Field names, types and which fields a row must carry are transcribed from the Prisma schema of
``hijohnnylin/neuronpedia``, ``apps/webapp/prisma/schema.prisma`` (commit 008d5040ab97), models
``Model``, ``Source``, ``SourceSet``, ``Neuron`` and ``Activation`` (scalar columns only; relations
left out); ``Explanation``, ``ExplanationType`` and ``ExplanationModelType`` from the same file
at commit ebb8426f. A field is *required* when the column has neither ``?`` nor ``@default``: the
importer (``apps/webapp/app/api/admin/import/route.ts``) passes each row to
``prisma.<model>.create`` as is, so a row may hold only these columns and must hold the required
ones.

The file layout is that of ``utils/neuronpedia-utils/neuronpedia_utils/export-data.py`` (same
repository; ``<model>/<source>/{model,sourceset,source}.jsonl`` plain, ``features/`` and
``activations/`` as ``batch-<N>.jsonl.gz`` numbered from 0) and of the importer, which reads
``model.jsonl``, ``sourceset.jsonl``, ``source.jsonl`` and every ``*.jsonl.gz`` of ``features/``
(table ``Neuron``) and ``activations/`` (table ``Activation``). Neuron sources are named by the bare
layer number in the ``neurons`` source set (``apps/webapp/lib/utils/source.ts``:
``NEURONS_SOURCESET``, ``isNeuronLayerSource``).
"""

from __future__ import annotations

import re
from typing import Any

# Prisma type -> the JSON value it takes (Float also takes a JSON integer; Boolean is not a number)
SCALARS: dict[str, tuple[type, ...]] = {
    "String": (str,),
    "Int": (int,),
    "Float": (float, int),
    "Boolean": (bool,),
    "Json": (dict, list, str, int, float, bool),
}

# field -> (Prisma type, required). "T[]" is a list of T; nullable ("T?") columns are not required.
MODEL: dict[str, tuple[str, bool]] = {
    "id": ("String", True),
    "displayNameShort": ("String", False),
    "displayName": ("String", False),
    "creatorId": ("String", True),
    "tlensId": ("String?", False),
    "openRouterId": ("String?", False),
    "dimension": ("Int?", False),
    "thinking": ("Boolean", False),
    "visibility": ("Visibility", False),
    "defaultSourceSetName": ("String?", False),
    "defaultSourceId": ("String?", False),
    "defaultGraphSourceSetName": ("String?", False),
    "inferenceEnabled": ("Boolean", False),
    "instruct": ("Boolean", False),
    "layers": ("Int", True),
    "neuronsPerLayer": ("Int", True),
    "createdAt": ("DateTime", False),
    "owner": ("String", True),
    "updatedAt": ("DateTime", False),
    "website": ("String?", False),
}

SOURCE: dict[str, tuple[str, bool]] = {
    "id": ("String", True),
    "modelId": ("String", True),
    "hasDashboards": ("Boolean", False),
    "inferenceEnabled": ("Boolean", False),
    "saelensConfig": ("Json?", False),
    "saelensRelease": ("String?", False),
    "saelensSaeId": ("String?", False),
    "hfRepoId": ("String?", False),
    "hfFolderId": ("String?", False),
    "visibility": ("Visibility", False),
    "defaultOfModelId": ("String?", False),
    "setName": ("String", True),
    "creatorId": ("String", True),
    "hasUmap": ("Boolean", False),
    "hasUmapLogSparsity": ("Boolean", False),
    "hasUmapClusters": ("Boolean", False),
    "num_prompts": ("Int?", False),
    "num_tokens_in_prompt": ("Int?", False),
    "dataset": ("String?", False),
    "notes": ("String?", False),
    "cosSimMatchModelId": ("String?", False),
    "cosSimMatchSourceId": ("String?", False),
    "createdAt": ("DateTime", False),
}

SOURCE_SET: dict[str, tuple[str, bool]] = {
    "modelId": ("String", True),
    "name": ("String", True),
    "hasDashboards": ("Boolean", False),
    "allowInferenceSearch": ("Boolean", False),
    "visibility": ("Visibility", False),
    "description": ("String", True),
    "type": ("String", False),
    "creatorName": ("String", True),
    "urls": ("String[]", True),
    "creatorEmail": ("String?", False),
    "creatorId": ("String", True),
    "releaseName": ("String?", False),
    "hasGraphs": ("Boolean", False),
    "graphEnabled": ("Boolean", False),
    "similarityMatrixEnabled": ("Boolean", False),
    "defaultOfModelId": ("String?", False),
    "defaultGraphModelId": ("String?", False),
    "defaultRange": ("Int", False),
    "defaultShowBreaks": ("Boolean", False),
    "showDfa": ("Boolean", False),
    "showCorrelated": ("Boolean", False),
    "showHeadAttribution": ("Boolean", False),
    "showUmap": ("Boolean", False),
    "createdAt": ("DateTime", False),
}

NEURON: dict[str, tuple[str, bool]] = {
    "modelId": ("String", True),
    "layer": ("String", True),
    "index": ("String", True),
    "sourceSetName": ("String?", False),
    "creatorId": ("String?", False),
    "createdAt": ("DateTime", False),
    "maxActApprox": ("Float?", False),
    "hasVector": ("Boolean", False),
    "vector": ("Float[]", False),
    "vectorLabel": ("String?", False),
    "vectorDefaultSteerStrength": ("Float?", False),
    "hookName": ("String?", False),
    "topkCosSimIndices": ("Int[]", False),
    "topkCosSimValues": ("Float[]", False),
    "neuron_alignment_indices": ("Int[]", False),
    "neuron_alignment_values": ("Float[]", False),
    "neuron_alignment_l1": ("Float[]", False),
    "correlated_neurons_indices": ("Int[]", False),
    "correlated_neurons_pearson": ("Float[]", False),
    "correlated_neurons_l1": ("Float[]", False),
    "correlated_features_indices": ("Int[]", False),
    "correlated_features_pearson": ("Float[]", False),
    "correlated_features_l1": ("Float[]", False),
    "neg_str": ("String[]", False),
    "neg_values": ("Float[]", False),
    "pos_str": ("String[]", False),
    "pos_values": ("Float[]", False),
    "frac_nonzero": ("Float", False),
    "freq_hist_data_bar_heights": ("Float[]", False),
    "freq_hist_data_bar_values": ("Float[]", False),
    "logits_hist_data_bar_heights": ("Float[]", False),
    "logits_hist_data_bar_values": ("Float[]", False),
    "decoder_weights_dist": ("Float[]", False),
    "umap_cluster": ("Int?", False),
    "umap_log_feature_sparsity": ("Float?", False),
    "umap_x": ("Float?", False),
    "umap_y": ("Float?", False),
}

ACTIVATION: dict[str, tuple[str, bool]] = {
    "id": ("String", False),  # @default(cuid())
    "tokens": ("String[]", True),
    "dataIndex": ("String?", False),
    "index": ("String", True),
    "layer": ("String", True),
    "modelId": ("String", True),
    "dataSource": ("String?", False),
    "maxValue": ("Float", True),
    "maxValueTokenIndex": ("Int", True),
    "minValue": ("Float", True),
    "values": ("Float[]", True),
    "dfaValues": ("Float[]", False),
    "dfaTargetIndex": ("Int?", False),
    "dfaMaxValue": ("Float?", False),
    "zQIndices": ("Int[]", False),
    "zKIndices": ("Int[]", False),
    "zValues": ("Float[]", False),
    "creatorId": ("String", True),
    "createdAt": ("DateTime", False),
    "lossValues": ("Float[]", False),
    "logitContributions": ("String?", False),
    "binMin": ("Float?", False),
    "binMax": ("Float?", False),
    "binContains": ("Float?", False),
    "qualifyingTokenIndex": ("Int?", False),
}

# model Explanation (scalar columns; ``embedding`` is Unsupported("vector(256)")?, left out).
EXPLANATION: dict[str, tuple[str, bool]] = {
    "id": ("String", False),  # @default(cuid())
    "modelId": ("String", True),
    "layer": ("String", True),
    "index": ("String", True),
    "description": ("String", True),
    "authorId": ("String", True),
    "triggeredByUserId": ("String?", False),
    "notes": ("String?", False),
    "scoreV1": ("Float", False),  # @default(0)
    "scoreV2": ("Float?", False),
    "umap_x": ("Float?", False),
    "umap_y": ("Float?", False),
    "umap_cluster": ("Int?", False),
    "umap_log_feature_sparsity": ("Float?", False),
    "typeName": ("String?", False),  # -> ExplanationType.name
    "explanationModelName": ("String?", False),  # -> ExplanationModelType.name
    "createdAt": ("DateTime", False),
    "updatedAt": ("DateTime", False),
}

EXPLANATION_TYPE: dict[str, tuple[str, bool]] = {
    "name": ("String", True),
    "displayName": ("String", True),
    "description": ("String", True),
    "featured": ("Boolean", False),
    "isAttention": ("Boolean", False),
    "explainerModelSettingsId": ("String?", False),
    "settings": ("String?", False),
    "url": ("String?", False),
    "creatorName": ("String", True),
    "creatorId": ("String", True),
    "createdAt": ("DateTime", False),
    "updatedAt": ("DateTime", False),
}

EXPLANATION_MODEL_TYPE: dict[str, tuple[str, bool]] = {
    "name": ("String", True),
    "displayName": ("String", True),
    "description": ("String", True),
    "featured": ("Boolean", False),
    "openRouterModelId": ("String?", False),
    "url": ("String?", False),
    "creatorName": ("String", True),
    "createdAt": ("DateTime", False),
    "updatedAt": ("DateTime", False),
}

VISIBILITY = ("PUBLIC", "UNLISTED", "PRIVATE")  # enum Visibility
NEURONS_SOURCESET = "neurons"
NEURON_SOURCE_RE = re.compile(r"^-?\d+$")  # isNeuronLayerSource
METADATA_FILES = {"model.jsonl": MODEL, "sourceset.jsonl": SOURCE_SET, "source.jsonl": SOURCE}
BATCH_DIRS = {"features": NEURON, "activations": ACTIVATION}
EXPLANATION_DIR = "explanations"  # batch-<N>.jsonl.gz of table Explanation (import/route.ts)
# the config tables that Explanation.typeName / explanationModelName reference (lib/db/import.ts)
CONFIG_FILES = {
    "explanation_type.jsonl": EXPLANATION_TYPE,
    "explanation_model_type.jsonl": EXPLANATION_MODEL_TYPE,
}
BATCH_RE = re.compile(r"^batch-(\d+)\.jsonl\.gz$")


def _type_ok(value: Any, prisma: str) -> bool:
    if prisma.endswith("?"):
        return value is None or _type_ok(value, prisma[:-1])
    if prisma.endswith("[]"):
        return isinstance(value, list) and all(_type_ok(v, prisma[:-2]) for v in value)
    if prisma == "Visibility":
        return value in VISIBILITY
    if prisma == "DateTime":
        return isinstance(value, str)  # ISO 8601, as the exporters write it
    if isinstance(value, bool) and prisma != "Boolean":
        return False
    return isinstance(value, SCALARS[prisma])


def validate(row: Any, schema: dict[str, tuple[str, bool]]) -> list[str]:
    """Every problem of one row against one table (empty when it imports as is)."""
    if not isinstance(row, dict):
        return [f"not an object: {row!r}"]
    problems = [f"unknown field {k!r}" for k in row if k not in schema]
    problems += [f"missing {k!r}" for k, (_, req) in schema.items() if req and k not in row]
    problems += [
        f"{k!r} is not {schema[k][0]}: {v!r}"
        for k, v in row.items()
        if k in schema and not _type_ok(v, schema[k][0])
    ]
    return problems
