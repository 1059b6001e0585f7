"""``verify``: check a run folder's completeness and checksums (after copying it)."""

from __future__ import annotations

import argparse

NAME = "verify"
HELP = "check that a run folder is complete and its shards match their checksums"
ORDER = 45
MAX_LISTED = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run folder")
    p.add_argument("--no_hashes", action="store_true", help="skip sha256 (sizes and shapes only)")


def run(args: argparse.Namespace) -> int:
    from ..errors import IncompleteRunError, RunFormatError
    from ..estimate import human_bytes
    from ..store import verify_run

    report = verify_run(args.run_dir, check_hashes=not args.no_hashes)
    for note in report.notes:
        print(f"note: {note}")
    problems = report.problems
    if report.incomplete and len(problems) == 1:
        raise IncompleteRunError(f"{args.run_dir}: {problems[0]}")
    if problems:
        for problem in problems[:MAX_LISTED]:
            print(f"  {problem}")
        if len(problems) > MAX_LISTED:
            print(f"  ... and {len(problems) - MAX_LISTED} more")
        n_bad = len(problems) - report.incomplete
        fix = "copy the run again"
        if report.n_shards:  # a prototype run (activations.pt) cannot be resumed
            fix = f"re-run the same dump command with --resume to recompute them, or {fix}"
        raise RunFormatError(
            f"{args.run_dir} failed verification, {n_bad} bad shard(s) or record(s) listed "
            f"above: {fix}"
        )
    print(
        f"ok: {report.run_dir}: {report.n_prompts} prompts, {report.n_tokens} tokens, "
        f"{report.n_shards} shards, {human_bytes(report.bytes)}"
    )
    return 0
