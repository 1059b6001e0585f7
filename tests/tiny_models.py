"""Tiny random-weight Gemma 2 / Gemma 3 models and a word-level tokenizer, built in code.

Nothing is downloaded. Each model comes as two copies with identical weights: one to wrap with
TransformerBridge (boot replaces its modules) and one plain transformers reference.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

WORDS = (
    "The capital of the state containing Dallas is Austin Texas city in USA a A entity : , . "
    "largest Houston California Sacramento Illinois Springfield attribute relationship located "
    "is the of and to was for on with hello world foo bar baz"
).split()


def make_tokenizer(folder: Path) -> Any:
    """A word-level fast tokenizer with <pad>=0, <eos>=1, <bos>=2, <unk>=3, saved and reloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tk.decoder = decoders.WordPiece()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        add_bos_token=True,
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def make_config(arch: str, vocab_size: int = 96) -> Any:
    """A 3-layer config: Gemma 2 has both softcaps; Gemma 3 has a sliding window and q/k norms."""
    from transformers import Gemma2Config, Gemma3TextConfig

    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    if arch == "gemma2":
        return Gemma2Config(
            **common, attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=4
        )
    if arch == "gemma3":
        return Gemma3TextConfig(**common, sliding_window=4)
    raise ValueError(arch)


def make_models(arch: str, seed: int = 0) -> tuple[Any, Any]:
    """Two eager-attention copies of one random model: (for the bridge, plain reference)."""
    import torch
    from transformers import Gemma2ForCausalLM, Gemma3ForCausalLM

    torch.manual_seed(seed)
    cfg = make_config(arch)
    cfg._attn_implementation = "eager"
    cls = Gemma2ForCausalLM if arch == "gemma2" else Gemma3ForCausalLM
    model = cls(cfg).eval()
    # Random init leaves the RMSNorm weights at zero (Gemma scales by 1 + w): perturb them so the
    # norms matter in every test.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)
    return model, copy.deepcopy(model)


def save_model_folder(arch: str, folder: Path, seed: int = 0) -> Path:
    """A local HF folder (config + weights + tokenizer) usable as ``--model_name``."""
    model, _ = make_models(arch, seed)
    model.save_pretrained(folder)
    make_tokenizer(folder)
    return folder


def exact_dump_args(
    prompts: Path,
    out: Path,
    model: Path | None = None,
    *,
    save_dtype: str = "fp32",
    prompts_flag: str = "--prompts_json",
) -> list[str]:
    """Flags of an exact ``dump`` (CPU, fp32 compute, no progress bar), without the command word.

    ``model=None`` keeps the default model (the embedded one).
    """
    args = [prompts_flag, str(prompts), "--out_dir", str(out)]
    if model is not None:
        args += ["--model_name", str(model)]
    return [
        *args,
        "--device",
        "cpu",
        "--model_dtype",
        "fp32",
        "--save_dtype",
        save_dtype,
        "--no_progress",
    ]
