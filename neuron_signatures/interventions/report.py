"""Text report of an :class:`~.run.InterventionResult`: before and after side by side.

Sections: the prompt and the edits, the top-k next tokens of every row (one column per row), the
listed tokens' logit / probability / rank per row, KL(before‖after) per set, and the
continuations. ``--json`` prints :meth:`~.run.InterventionResult.to_json` instead.
"""

from __future__ import annotations

from .run import InterventionResult, RowResult, TokenStat


def _grid(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]


def _tok(t: TokenStat) -> str:
    return repr(t.token) if t.token else f"#{t.token_id}"  # ids a tokenizer cannot decode


def top_lines(res: InterventionResult) -> list[str]:
    k = max(len(r.top) for r in res.rows)
    body = []
    for i in range(k):
        line = [str(i + 1)]
        for r in res.rows:
            t = r.top[i] if i < len(r.top) else None
            line += [_tok(t), f"{t.prob:.4f}"] if t else ["", ""]
        body.append(line)
    header = ["#"] + [c for r in res.rows for c in (r.label, "prob")]
    return [f"next token, top {k}:", *_grid(header, body)]


def listed_lines(res: InterventionResult) -> list[str]:
    if not res.rows[0].listed:
        return []
    header = ["token"] + [f"{c} {r.label}" for r in res.rows for c in ("logit", "prob", "rank")]
    body = []
    for j, t in enumerate(res.rows[0].listed):
        line = [_tok(t)]
        for r in res.rows:
            s = r.listed[j]
            line += [f"{s.logit:+.4f}", f"{s.prob:.4g}", str(s.rank)]
        body.append(line)
    return ["listed tokens:", *_grid(header, body)]


def _edits(r: RowResult) -> str:
    return ", ".join(r.edits) or "(no edit)"


def format_report(res: InterventionResult) -> str:
    """The whole report as text (see the module doc)."""
    where = "every position" if res.edited_positions is None else str(res.edited_positions)
    lines = [
        f"model {res.model} ({res.dtype}, {res.device}) | prompt {res.prompt!r} "
        f"({len(res.token_ids)} tokens, BOS included)",
        f"edits at positions {res.positions} ({where}) on blocks.L.mlp.hook_post:",
        *[f"  {r.label}: {_edits(r)}" for r in res.rows[1:]],
        "",
        *top_lines(res),
    ]
    listed = listed_lines(res)
    if listed:
        lines += ["", *listed]
    if len(res.rows) > 1:
        lines += ["", "KL(before‖after), nats:"]
        lines += [f"  {r.label}: {r.kl:.6g}" for r in res.rows[1:]]
    if res.generation is not None:
        g = res.generation
        how = (
            "greedy"
            if g["temperature"] == 0
            else f"temperature {g['temperature']}, seed {g['seed']}"
        )
        width = max(len(r.label) for r in res.rows)
        lines += ["", f"continuations ({g['n_new']} new tokens, {how}):"]
        lines += [f"  {r.label.ljust(width)}  {r.continuation!r}" for r in res.rows]
    return "\n".join(lines)
