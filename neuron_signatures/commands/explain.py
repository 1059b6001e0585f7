"""``explain``: explain and score every neuron of an atlas offline (token lookup, correlation
scores with floors), into ``<atlas>/explanations/``."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "explain"
HELP = (
    "explain and score every neuron of an atlas: a token-lookup explanation per sign offline, "
    "or an LLM's (--explainer llm); correlation scores on held-out windows (top-and-random, "
    "random-only) with floors, and with an LLM detection and fuzzing scores (balanced accuracy, "
    "AUC) with floors"
)
ORDER = 17


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--atlas", required=True, help="atlas folder (made by `neuron-signatures atlas`)"
    )
    p.add_argument("--layers", default=None, help="explain only these layers, e.g. 5,10-17")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace existing explanations")
    p.add_argument(
        "--n_random_tokens",
        type=int,
        default=4096,
        help="tokens of the random held-out windows run through the model (default 4096)",
    )
    p.add_argument(
        "--top_tokens",
        type=int,
        default=None,
        help="tokens per explanation table (default: chosen per layer from 8, 16, 32, 64 on a "
        "validation slice of the train split)",
    )
    p.add_argument(
        "--prior",
        type=float,
        default=None,
        help="rank tokens by sum / (count + prior): rare tokens rank lower (default: chosen per "
        "layer from 0, 1, 3, 10 with --top_tokens)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the random windows and the floors")
    p.add_argument("--batch_size", type=int, default=16, help="windows per forward batch")
    p.add_argument("--device", default=None, help="device of the score-time forward (default auto)")
    p.add_argument(
        "--explainer",
        choices=("token-lookup", "llm"),
        default="token-lookup",
        help="token-lookup (offline, into explanations/) or llm (an OpenAI-compatible server, "
        "into explanations-llm/)",
    )
    p.add_argument(
        "--base_url", default=None, help="LLM server's API root, e.g. http://127.0.0.1:8080/v1"
    )
    p.add_argument("--model", default=None, help="model name the LLM server serves")
    p.add_argument(
        "--api_key_env",
        default=None,
        help="NAME of the environment variable holding the API key (the key is never a flag)",
    )
    p.add_argument(
        "--best_of",
        type=int,
        default=1,
        help="explanations sampled per side; the simulator keeps the best on a train slice",
    )
    p.add_argument("--concurrency", type=int, default=4, help="LLM requests in flight (default 4)")
    p.add_argument(
        "--prompt_format",
        choices=("openai", "delphi"),
        default="openai",
        help="explainer prompt: OpenAI's token<TAB>activation records or delphi's <<highlights>>",
    )
    p.add_argument(
        "--max_examples", type=int, default=10, help="train windows shown to the LLM per side"
    )
    p.add_argument("--timeout_s", type=float, default=60.0, help="per LLM request (default 60)")
    p.add_argument(
        "--max_retries",
        type=int,
        default=4,
        help="retries of an LLM request on 429/5xx/connection errors (default 4)",
    )
    p.add_argument(
        "--scorers",
        default="simulation,detection,fuzzing",
        help="LLM scorers, comma-separated (default all three); requests per neuron side, "
        "each doubled for its floor: simulation 1 per held-out window (held-out top examples "
        "+ random windows), detection and fuzzing 1 per 5 examples (the activating held-out "
        "windows and as many quiet random ones)",
    )
    p.add_argument(
        "--simulator",
        choices=("auto", "prompt_logprobs", "top_logprobs", "json"),
        default="auto",
        help="how the simulator's 0-10 predictions are read: auto (the best the server offers: "
        "/completions prompt logprobs, else chat top_logprobs, else the JSON answer) or one of "
        "them; a method the server does not offer is refused at start",
    )


def run(args: argparse.Namespace) -> int:
    from ..explain import ExplainConfig, explain_atlas
    from ..explain.llm_run import LLMSettings, summary
    from ..neurons import parse_layers

    llm = None
    if args.explainer == "llm":
        llm = LLMSettings(
            base_url=args.base_url,
            model=args.model,
            api_key_env=args.api_key_env,
            best_of=args.best_of,
            concurrency=args.concurrency,
            prompt_format=args.prompt_format,
            max_examples=args.max_examples,
            timeout_s=args.timeout_s,
            max_retries=args.max_retries,
            scorers=_scorers(args.scorers),
            simulator=args.simulator,
        )

    out = explain_atlas(
        ExplainConfig(
            atlas=Path(args.atlas),
            layers=parse_layers(args.layers),
            resume=args.resume,
            overwrite=args.overwrite,
            n_random_tokens=args.n_random_tokens,
            top_tokens=args.top_tokens,
            prior=args.prior,
            seed=args.seed,
            batch_size=args.batch_size,
            device=args.device,
            explainer=args.explainer,
            llm=llm,
        )
    )
    print(f"explanations written to {out}")
    if llm is not None:
        line = summary(out, parse_layers(args.layers) or _written_layers(out))
        if line:
            print(line)
    return 0


def _scorers(text: str) -> tuple[str, ...]:
    from ..errors import BadArgumentError
    from ..explain.classify import parse_scorers

    try:
        return parse_scorers(text)
    except ValueError as e:
        raise BadArgumentError(f"--scorers: {e}") from None


def _written_layers(out: Path) -> list[int]:
    from ..explain.output import read_manifest

    return [int(x) for x in read_manifest(out)["params"]["layers"]]
