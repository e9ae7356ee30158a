"""Laptop export, the GPT4All way: a run's model as GGUF at 16 and 4 bits, plus an Ollama Modelfile.

    python -m lib.serve.export runs/<id>          # -> runs/<id>/export/<id>.F16.gguf, <id>.Q4_K_M.gguf, Modelfile

Nothing here writes GGUF by hand. The 16-bit file is made by llama.cpp's own converter
(`convert_hf_to_gguf.py`, with its `conversion/` package and the `gguf-py` it is versioned
with), taken from the llama-cpp-python source distribution that `make setup` keeps in
.cache/llama.cpp/ -- the same llama.cpp version as the installed `llama_cpp`. The 4-bit
file is made from the 16-bit one by llama.cpp's quantizer through llama-cpp-python's
`llama_model_quantize` (Q4_K_M). The converter embeds the tokenizer's chat template, so the
checkpoint it reads is `lib.serve.template.serving_checkpoint`: the trained prompt format as
Jinja. llama.cpp's server, LM Studio and GPT4All read that template from the file; Ollama
takes Go templates, hence the Modelfile.

Files are written whole through lib.core.files (a temporary sibling, renamed); a manifest keyed
on the checkpoint's fingerprint makes a re-run skip what is current and redo what a
retrained model made stale.

The parity helpers at the bottom (`top1_agreement`, `greedy_*`, `perplexity`) compare a GGUF
with the Hugging Face model on the same token ids; tests and bench/bench_export.py use them.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from lib.core.errors import UserError, cli
from lib.core.files import (atomic_write, atomic_write_json, atomic_write_via, check_writable, publish_dir,
                            read_json)
from lib.core.formats import ALPACA_PROMPT_NO_INPUT, VICUNA_V1_1, check_format
from lib.core.model import model_fingerprint
from lib.core.paths import cache_dir
from lib.serve.run_model import RunModel, load_run_model
from lib.serve.template import serving_checkpoint

QUANTS = ("F16", "Q4_K_M")
_CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def llama_cpp_version() -> str:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        raise UserError("llama-cpp-python is not installed: run `make setup` (the first build compiles "
                        "llama.cpp, about 11 minutes on 2 cores)") from None


def converter_script() -> Path:
    """llama.cpp's convert_hf_to_gguf.py for the installed llama-cpp-python, unpacked once from its sdist."""
    version = llama_cpp_version()
    root = cache_dir() / "llama.cpp"
    target = root / version
    script = target / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    sdist = root / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.is_file():
        raise UserError(f"llama.cpp's converter is missing ({sdist}): run `make setup`, which keeps the "
                        "llama-cpp-python source there")
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root))
    try:
        with tarfile.open(sdist) as tar:
            members = []
            for m in tar.getmembers():
                rel = m.name[len(prefix):] if m.name.startswith(prefix) else ""
                if rel and any(rel == p or rel.startswith(p) for p in _CONVERTER_PARTS) and (m.isfile() or m.isdir()):
                    m.name = rel
                    members.append(m)
            tar.extractall(tmp, members=members, filter="data")
        if not (tmp / "convert_hf_to_gguf.py").is_file():
            raise UserError(f"{sdist} holds no convert_hf_to_gguf.py: reinstall with `make setup`")
        publish_dir(tmp, target, note=f"unpacked from {sdist.name}\n")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return script


def check_sentencepiece_scores(checkpoint: str | os.PathLike) -> None:
    """Refuse a checkpoint whose tokenizer was converted from SentencePiece (BPE with byte fallback,
    LLaMA's layout) but which lacks the tokenizer.model: llama.cpp's converter then gives every piece
    the same score (its LlamaHfVocab fallback), and llama.cpp, which merges by score, segments text
    otherwise than training did (on most held-out documents, English included: docs/fidelity.md)."""
    ckpt = Path(checkpoint)
    model = (read_json(ckpt / "tokenizer.json", {}) or {}).get("model") or {}
    if model.get("type") == "BPE" and model.get("byte_fallback") and not (ckpt / "tokenizer.model").is_file():
        raise UserError(f"{ckpt} has a SentencePiece tokenizer but no tokenizer.model, whose scores llama.cpp "
                        "needs to tokenize as training did: copy the base model's (or `vocab extend`'s) "
                        "tokenizer.model into it")


# How a full disk (or a file-size limit) shows in the converter's output: an errno, or numpy's
# short write ("OSError: 3145728 requested and 1614096 written"), which carries none.
DISK_FULL = re.compile(r"No space left on device|File too large|Disk quota exceeded|\[Errno (28|27|122)\]"
                       r"|OSError: \d+ requested and \d+ written")


def convert_f16(checkpoint: str | os.PathLike, out: str | os.PathLike, *, log=None) -> Path:
    """Hugging Face checkpoint -> 16-bit GGUF with llama.cpp's converter (a subprocess: it is a script)."""
    check_sentencepiece_scores(checkpoint)
    script = converter_script()

    def convert(tmp: str) -> None:
        cmd = [sys.executable, str(script), str(checkpoint), "--outtype", "f16", "--outfile", tmp]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if log is not None:  # captured whole, so written whole (not a log streamed while it runs)
            atomic_write(log, res.stdout)
        if res.returncode != 0 or not os.path.getsize(tmp):
            last = (res.stdout.strip().splitlines() or ["no output"])[-1][:200]
            if DISK_FULL.search(res.stdout):  # the converter's own OSError, not an architecture
                raise UserError(f"disk full while converting {checkpoint} to {out}: free space, then export again")
            raise UserError(f"llama.cpp's converter failed on {checkpoint} ({last}): this architecture may be "
                            "unsupported by llama.cpp; see the log" + (f" {log}" if log else ""))

    atomic_write_via(out, convert)
    return Path(out)


def quantize(src: str | os.PathLike, out: str | os.PathLike, quant: str = "Q4_K_M", threads: int | None = None) -> Path:
    """GGUF -> quantized GGUF with llama.cpp's quantizer (llama_model_quantize)."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if ftype is None:
        raise UserError(f"unknown quantization {quant!r}: use Q4_K_M (or another llama.cpp type like Q8_0)")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1

    def run(tmp: str) -> None:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), tmp.encode(), ctypes.byref(params))
        if rc != 0 or not os.path.getsize(tmp):
            raise UserError(f"llama.cpp could not quantize {src} to {quant} (code {rc}): re-export the 16-bit file")

    atomic_write_via(out, run)
    return Path(out)


# ---------------------------------------------------------------------------- Ollama


def _go_template(tok, fmt: str) -> str | None:
    """Ollama's Go template for the trained format, or None to leave the template to Ollama."""
    V = VICUNA_V1_1
    fmt = check_format(fmt)
    if fmt == "alpaca":
        # Ollama hands one user message at a time (.Prompt): Alpaca's single-turn prompt.
        head, tail = ALPACA_PROMPT_NO_INPUT.split("{instruction}")
        return head + "{{ .Prompt }}" + tail + "{{ .Response }}"
    if fmt == "vicuna_v1.1":
        eos = tok.eos_token or ""
        return (V.system + '{{- $first := true }}{{- range .Messages }}'
                '{{- if eq .Role "user" }}{{ if $first }}' + V.sep + '{{ end }}' + V.user + ': {{ .Content }}'
                + V.sep + V.assistant + ':{{ $first = false }}'
                '{{- else if eq .Role "assistant" }} {{ .Content }}' + eos + '{{- end }}{{- end }}')
    if "<|im_start|>" in (tok.chat_template or ""):  # ChatML (SmolLM2, Qwen)
        return ('{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
                '<|im_start|>assistant\n')
    return None


def modelfile(gguf_name: str, tok, fmt: str) -> str:
    lines = [f"# Ollama: ollama create <name> -f Modelfile && ollama run <name>", f"FROM ./{gguf_name}"]
    tpl = _go_template(tok, fmt)
    if tpl is None:
        lines.append("# No TEMPLATE: Ollama reads the chat template embedded in the GGUF.")
    else:
        lines.append(f'TEMPLATE """{tpl}"""')
    if tok.eos_token:
        lines.append(f'PARAMETER stop "{tok.eos_token}"')
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- export


@dataclass
class Export:
    dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    modelfile: Path | None = None

    def gguf(self, quant: str) -> Path:
        return self.files[quant.upper()]


def export_run(run, *, quants=QUANTS, out_dir: str | os.PathLike | None = None, threads: int | None = None,
               echo=print) -> Export:
    """Export a run's model (a RunModel or runs/<id>); current files are kept, stale ones redone."""
    rm = run if isinstance(run, RunModel) else load_run_model(run)
    quants = tuple(q.upper() for q in quants)
    out = Path(out_dir or rm.run_dir / "export")
    # before minutes of conversion: both places are writable and the 16-bit file (at most the
    # checkpoint's size: fp32 halves, bf16 stays) plus its quantizations fit
    weights = sum(p.stat().st_size for p in Path(rm.model_dir).glob("*.safetensors"))
    check_writable(rm.run_dir / "serve", what="the serving view")
    check_writable(out, need_bytes=weights, what="the export directory")
    made = not out.exists()
    try:
        return _export(rm, quants, out, threads, echo)
    except BaseException:
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing half-written: not even an empty directory
        raise


def _export(rm: RunModel, quants: tuple[str, ...], out: Path, threads: int | None, echo) -> Export:
    from transformers import AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    fingerprint = model_fingerprint(rm.model_dir)
    manifest = read_json(manifest_path, {})
    if manifest.get("fingerprint") != fingerprint or manifest.get("format") != rm.format:
        manifest = {"fingerprint": fingerprint, "format": rm.format, "files": {}}
    result = Export(out)
    f16 = out / f"{rm.name}.F16.gguf"

    def have(q: str) -> bool:
        return q in manifest["files"] and (out / manifest["files"][q]["file"]).is_file()

    # Every quantization starts from the 16-bit file, so it is made whenever anything is missing.
    if not all(have(q) for q in quants) and not have("F16"):
        echo(f"export: converting {rm.model_dir} to 16-bit GGUF (llama.cpp {llama_cpp_version()})")
        ckpt = serving_checkpoint(rm)
        convert_f16(ckpt, f16, log=rm.run_dir / "logs" / "export-convert.log")
        manifest["files"]["F16"] = {"file": f16.name, "bytes": f16.stat().st_size}
    for q in quants:
        if have(q):
            continue
        dst = out / f"{rm.name}.{q}.gguf"
        echo(f"export: quantizing to {q} with llama.cpp")
        quantize(f16, dst, q, threads=threads)
        manifest["files"][q] = {"file": dst.name, "bytes": dst.stat().st_size}
    atomic_write_json(manifest_path, manifest)
    for q in quants:
        result.files[q] = out / manifest["files"][q]["file"]
    tok = AutoTokenizer.from_pretrained(rm.model_dir)
    small = "Q4_K_M" if "Q4_K_M" in result.files else next(iter(result.files))
    result.modelfile = out / "Modelfile"
    atomic_write(result.modelfile, modelfile(result.files[small].name, tok, rm.format))
    return result


# ---------------------------------------------------------------------------- parity


def load_gguf(path: str | os.PathLike, *, n_ctx: int = 1024, threads: int | None = None, logits_all: bool = True):
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads or os.cpu_count(),
                 n_threads_batch=threads or os.cpu_count(), logits_all=logits_all, verbose=False)


def gguf_logits(llm, ids: list[int]):
    """Logits at every position of `ids` (numpy, [len, vocab]), from a fresh context."""
    llm.reset()
    llm.eval(ids)
    return llm.scores[: len(ids)].copy()


def hf_logits(model, ids: list[int]):
    import torch

    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def top1_agreement(model, llm, sequences: list[list[int]]) -> tuple[int, int]:
    """(positions where both pick the same next token, positions compared), same token ids fed to both."""
    agree = total = 0
    for ids in sequences:
        a = hf_logits(model, ids).argmax(-1)
        b = gguf_logits(llm, ids).argmax(-1)
        agree += int((a == b).sum())
        total += len(ids)
    return agree, total


def greedy_hf(model, ids: list[int], n: int, eos: list[int]) -> list[int]:
    import torch

    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n, do_sample=False, eos_token_id=eos, pad_token_id=eos[0])
    return out[0, len(ids):].tolist()


def greedy_gguf(llm, ids: list[int], n: int, eos: list[int]) -> list[int]:
    """Greedy continuation by argmax over llama.cpp's logits (no sampler in between)."""
    out: list[int] = []
    logits = gguf_logits(llm, ids)
    for _ in range(n):
        nxt = int(logits[-1].argmax())
        out.append(nxt)
        if nxt in eos:
            break
        llm.eval([nxt])
        logits = llm.scores[llm.n_tokens - 1: llm.n_tokens]
    return out


def perplexity(logits_fn, sequences: list[list[int]]) -> float:
    """exp(mean next-token NLL) over all positions of all sequences."""
    nll = count = 0.0
    for ids in sequences:
        lg = logits_fn(ids)[:-1].astype(np.float64)
        lg -= lg.max(-1, keepdims=True)
        logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
        nll -= float(logp[np.arange(len(ids) - 1), ids[1:]].sum())
        count += len(ids) - 1
    return float(np.exp(nll / count))


@cli
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lib.serve.export", description=__doc__.split("\n")[0])
    p.add_argument("run", help="run directory, e.g. runs/<id>")
    p.add_argument("--quant", action="append", help="F16 and/or Q4_K_M (default: both)")
    a = p.parse_args(argv)
    res = export_run(a.run, quants=tuple(a.quant or QUANTS))
    for q, f in res.files.items():
        print(f"{q:7s} {f}  ({f.stat().st_size / 2**20:.1f} MiB)")
    print(f"Ollama  {res.modelfile}")


if __name__ == "__main__":
    main()
