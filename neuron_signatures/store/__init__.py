"""Run folders: the manifest, safetensors shards, readers, writers and verification.

This is the only package that reads or writes run folders; everything else goes through
:func:`open_run`, :class:`RunClaim` and :class:`RunWriter` (:func:`open_writer`).
"""

from .claim import RunClaim, open_writer
from .manifest import FORMAT_VERSION, HOOK_TEMPLATE, read_manifest
from .reader import open_run
from .run import Block, PromptRecord, Run
from .verify import VerifyReport, verify_run
from .writable import check_writable
from .writer import RunWriter, shard_name

__all__ = [
    "FORMAT_VERSION",
    "HOOK_TEMPLATE",
    "Block",
    "PromptRecord",
    "Run",
    "RunClaim",
    "RunWriter",
    "VerifyReport",
    "check_writable",
    "open_run",
    "open_writer",
    "read_manifest",
    "shard_name",
    "verify_run",
]
