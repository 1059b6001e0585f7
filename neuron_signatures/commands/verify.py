"""``verify``: check a run folder's completeness and checksums (after copying it)."""

from __future__ import annotations

import argparse

NAME = "verify"
HELP = "check that a run folder is complete and its shards match their checksums"
ORDER = 45


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run folder")
    p.add_argument("--no_hashes", action="store_true", help="skip sha256 (sizes and shapes only)")


def run(args: argparse.Namespace) -> int:
    from ..errors import RunFormatError
    from ..estimate import human_bytes
    from ..store import verify_run

    report = verify_run(args.run_dir, check_hashes=not args.no_hashes)
    if not report.ok:
        for problem in report.problems[:20]:
            print(f"  {problem}")
        raise RunFormatError(
            f"{args.run_dir} failed verification ({len(report.problems)} problems): copy the run "
            "again or finish it with --resume"
        )
    print(
        f"ok: {report.run_dir}: {report.n_prompts} prompts, {report.n_tokens} tokens, "
        f"{report.n_shards} shards, {human_bytes(report.bytes)}"
    )
    return 0
