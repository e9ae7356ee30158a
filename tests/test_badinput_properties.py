"""Property-based bad input (issue 23 item 5): hypothesis writes malformed files the user gives or the
project reads back; each gets a result or one UserError line, never a traceback, and no file on disk changes.

In process (no subprocess per example) and bounded: `derandomize=True` (the same examples on every
machine, so CI is reproducible), `max_examples` per class below, no deadline (2 shared cores).
docs/robustness.md counts the classes and examples.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct
from functools import lru_cache
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from lib.budget import load_budgets
from lib.budget.ledger import Ledger
from lib.clean import CleanConfig, clean_file
from lib.core.errors import UserError
from lib.core.files import read_jsonl
from lib.core.masking import encode_records
from lib.core.model import check_checkpoint
from lib.core.profiles import load_profile, notebook_params, parse_sets
from lib.serve.run_model import training_metadata
from lib.train.data import read_training_records
from lib.train.model import load_tokenizer
from lib.train.recipes import RECIPES_DIR, Hardware, Recipe, load_recipe
from lib.train.vocab import read_sentencepiece
from tests.train_tokenizers import mistral_sp_model

EXAMPLES = 100  # per class: 11 classes x 100 = 1,100 examples, ~15 s on 2 loaded cores (most of it imports)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# JSON-ish values: what a user's hand or a torn write puts where a value belongs
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
# raw bytes: binary, truncated UTF-8, text
raw = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8")),
                st.builds(lambda v: json.dumps(v, default=str).encode()[: 50], values))


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _only_user_errors(fn, root: Path) -> None:
    """`fn()` returns or raises UserError (one line); the files under `root` are unchanged."""
    before = _tree(root)
    try:
        fn()
        event("result")  # --hypothesis-show-statistics counts results and refusals per class
    except UserError as e:
        assert "\n" not in str(e) and len(str(e)) < 600, str(e)
        event("UserError")
    assert _tree(root) == before


@SETTINGS
@given(value=st.text(max_size=30), param=st.sampled_from(["max_steps", "learning_rate", "packing", "model",
                                                          "overrides", "nproc"]))
def test_set_values(value, param):
    """`--set 03_train.PARAM=VALUE` against the typed parameters cell: typed result or one line."""
    prof = load_profile("local")
    try:
        plan = notebook_params(prof, parse_sets([f"03_train.{param}={value}"]))
    except UserError as e:
        assert "\n" not in str(e)
        return
    got = dict((n, p) for n, _, p in plan)["03_train"][param]
    want = {"max_steps": int, "nproc": int, "learning_rate": float, "packing": bool, "model": str, "overrides": dict}
    assert isinstance(got, want[param]) and (param not in ("max_steps", "nproc") or not isinstance(got, bool))


@SETTINGS
@given(body=st.one_of(raw, st.builds(lambda v: yaml.safe_dump(v).encode(), values),
                      st.builds(lambda d: yaml.safe_dump({"currency": "USD", "phases": d}).encode(),
                                st.dictionaries(st.sampled_from(["data", "training", "evaluation", "serving", "x"]),
                                                values, max_size=4))))
def test_budgets_yaml(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("b")
    (root / "budgets.yaml").write_bytes(body)
    _only_user_errors(lambda: load_budgets(root / "budgets.yaml"), root)


@SETTINGS
@given(body=st.one_of(raw, st.builds(lambda v: yaml.safe_dump(v).encode(), values),
                      st.builds(lambda nb: yaml.safe_dump({"notebooks": nb}).encode(),
                                st.dictionaries(st.sampled_from(["01_generate", "03_train", "zz"]), values, max_size=2))))
def test_profiles(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("p")
    (root / "p.yaml").write_bytes(body)
    _only_user_errors(lambda: notebook_params(load_profile(str(root / "p.yaml")), {}), root)


@SETTINGS
@given(lines=st.lists(st.one_of(raw, st.builds(lambda v: json.dumps(v, default=str).encode(), values),
                                st.builds(lambda usd, ph: json.dumps({"id": "api:1", "kind": "api", "phase": ph,
                                                                       "usd": usd, "ts": 1.0}).encode(),
                                          scalars, st.sampled_from(["data", "training", "nope"]))), max_size=4))
def test_ledger_lines(tmp_path_factory, lines):
    """A ledger with any lines: spent is a finite amount >= 0, or one line names the bad record."""
    root = tmp_path_factory.mktemp("l")
    (root / "ledger").mkdir()
    (root / "ledger" / "x.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    def spent():
        total = Ledger(root / "ledger", writer="reader").spent()
        assert total >= 0 and total == total and total != float("inf")

    _only_user_errors(spent, root)


@SETTINGS
@given(body=st.one_of(raw, st.lists(st.builds(lambda v: json.dumps(v, default=str), values), max_size=4)
                      .map(lambda ls: "\n".join(ls).encode())))
def test_jsonl_records(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("j")
    (root / "d.jsonl").write_bytes(body)
    _only_user_errors(lambda: read_jsonl(root / "d.jsonl"), root)


def _half(a, b):
    """`a` for half the examples, `b` for the rest (st.one_of would flatten b's own branches)."""
    return st.booleans().flatmap(lambda first: a if first else b)


def _safetensors(header) -> bytes:
    """A safetensors file whose JSON header is `header` (any value), with no tensor bytes."""
    body = json.dumps(header, default=str).encode()
    return struct.pack("<Q", len(body)) + body


_tensor_entry = st.one_of(values, st.fixed_dictionaries({"dtype": st.just("F32"), "shape": values,
                                                         "data_offsets": st.one_of(values, st.lists(scalars, max_size=3))}))


@SETTINGS
@given(config=_half(st.just(b'{"model_type": "llama"}'),  # half the time a config that passes, so the weights are read
                    st.one_of(raw, st.builds(lambda v: json.dumps(v, default=str).encode(), values))),
       weights=_half(st.builds(_safetensors, st.one_of(values, st.dictionaries(st.text(max_size=4), _tensor_entry,
                                                                                max_size=2))),
                     st.one_of(raw, st.binary(min_size=8, max_size=8))))
def test_config_json_and_weights(tmp_path_factory, config, weights):
    root = tmp_path_factory.mktemp("c")
    (root / "config.json").write_bytes(config)
    (root / "model.safetensors").write_bytes(weights)
    _only_user_errors(lambda: check_checkpoint(root), root)


@SETTINGS
@given(metrics=st.one_of(raw, st.builds(lambda v: json.dumps(v, default=str).encode(), values)))
def test_metrics_json(tmp_path_factory, metrics):
    root = tmp_path_factory.mktemp("m")
    (root / "train").mkdir()
    (root / "train" / "metrics.json").write_bytes(metrics)
    _only_user_errors(lambda: training_metadata(root), root)


# ------------------------------------------------------------------------------ recipes

_TINY = yaml.safe_load((RECIPES_DIR / "tiny.yaml").read_text())
_RECIPE_KEYS = sorted(f.name for f in dataclasses.fields(Recipe))
_HARDWARE_KEYS = sorted(f.name for f in dataclasses.fields(Hardware))


def _recipe_with(top: dict, hardware: dict) -> bytes:
    data = {**_TINY, **top}
    if hardware:
        data["hardware"] = {**_TINY["hardware"], **hardware}
    return yaml.safe_dump(data).encode()


@SETTINGS
@given(body=st.one_of(raw, st.builds(lambda v: yaml.safe_dump(v).encode(), values),
                      st.builds(_recipe_with, st.dictionaries(st.sampled_from(_RECIPE_KEYS), values, max_size=2),
                                st.dictionaries(st.sampled_from(_HARDWARE_KEYS), values, max_size=2)),
                      st.builds(_recipe_with, st.dictionaries(st.sampled_from(_RECIPE_KEYS), scalars, max_size=1),
                                st.dictionaries(st.sampled_from(_HARDWARE_KEYS), scalars, max_size=1))))
def test_recipes(tmp_path_factory, body):
    """A recipe file with anything in it: a Recipe whose fields have their declared types, or one line."""
    root = tmp_path_factory.mktemp("r")
    (root / "r.yaml").write_bytes(body)

    def load():
        r = load_recipe(str(root / "r.yaml"))
        assert isinstance(r.max_length, int) and isinstance(r.learning_rate, float) and isinstance(r.format, str)
        assert isinstance(r.hardware, Hardware) and isinstance(r.per_step_batch, int)

    _only_user_errors(load, root)


# ------------------------------------------------------------------------------ chat records

_roles = st.one_of(st.sampled_from(["human", "gpt", "system", "user", "assistant", "bard", "nobody", ""]), scalars)
# Text a record's turn holds: ordinary, empty, whitespace, a lone surrogate (valid JSON "\ud83d"), any value.
_content = st.one_of(st.text(max_size=20), st.sampled_from(["", "  \n", "\ud83d", "a\ud800b"]), values)
_turn = st.one_of(st.fixed_dictionaries({"from": _roles, "value": _content}),
                  st.fixed_dictionaries({"role": _roles, "content": _content}),
                  st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt"]), "value": st.text(max_size=20)}),
                  values)
_chat_record = st.one_of(
    st.fixed_dictionaries({"id": scalars, "conversations": st.lists(_turn, max_size=5)}),
    st.fixed_dictionaries({"messages": st.lists(_turn, max_size=5)}),
    st.fixed_dictionaries({"conversations": values}),
    st.fixed_dictionaries({"instruction": _content, "input": _content, "output": _content}),
    values)


@lru_cache(maxsize=1)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _write_jsonl(path: Path, records: list) -> None:
    path.write_text("\n".join(json.dumps(r, default=str) for r in records) + "\n")


# Every stage but the two MinHash ones: they see only records the reader validated (text fields),
# never the shapes generated here, and their LSH set-up (~30 ms a call) would double the time.
FAST_CLEAN = CleanConfig(on_error="report", drop_near_duplicates=False, drop_low_diversity_sources=False)


def _funnel_adds_up(result) -> None:
    """Every record read is kept or counted by one stage (no split: max_tokens is 0)."""
    rep = result.report
    assert rep.records_in == len(result.records) + sum(s.dropped for s in rep.stages)
    for rec in result.records:
        for turn in rec.get("conversations", []):
            assert isinstance(turn["value"], str) and turn["from"] in ("human", "gpt", "system")


@SETTINGS
@given(records=st.lists(_chat_record, min_size=1, max_size=4))
def test_chat_records(tmp_path_factory, embedded_model, records):
    """Conversations with missing or odd roles, wrong types, empty turns: the cleaner keeps or counts
    each one, and the trainer's encoder labels or counts each one in every prompt format."""
    root = tmp_path_factory.mktemp("chat")
    _write_jsonl(root / "d.jsonl", records)
    tok = _tokenizer(str(embedded_model))

    def clean_and_encode():
        try:
            _funnel_adds_up(clean_file(root / "d.jsonl", FAST_CLEAN, progress=False))
        except UserError as e:  # e.g. a file of non-records: one line, and the trainer must say so too
            assert "\n" not in str(e)
        recs = read_training_records(root / "d.jsonl")
        for fmt in ("alpaca", "vicuna_v1.1", "chat"):
            examples, report = encode_records(recs, tok, fmt=fmt, max_length=64)
            assert report.kept + sum(report.dropped.values()) == len(recs) == report.total
            assert all(len(ex["input_ids"]) == len(ex["labels"]) <= 64 for ex in examples)

    _only_user_errors(clean_and_encode, root)


# ------------------------------------------------------------------------------ ShareGPT pages

_TAGS = ["p", "div", "pre", "code", "span", "button", "ol", "ul", "li", "table", "tr", "td", "a", "br", "h2", "b",
         "svg", "img", "blockquote", "hr"]
_ATTRS = st.sampled_from(["", ' class="markdown prose"', ' class="hljs language-python"', ' class="language-"',
                          ' class="language-undefined"', ' href="javascript:x"', ' class=', " \"'"])
_page_text = st.one_of(st.text(max_size=12), st.sampled_from(
    ["1 / 2", "2 / 2", "Copy code", "Copy3 chars / 1 words", "```", "````py", "&amp;", "&#0;", "&lt;div&gt;", "<", ">",
     "\n", "\ud83d"]))
_html = st.recursive(_page_text, lambda inner: st.one_of(
    st.builds(lambda t, a, kids: f"<{t}{a}>{''.join(kids)}</{t}>", st.sampled_from(_TAGS), _ATTRS,
              st.lists(inner, max_size=3)),
    st.builds(lambda t, a, kids: f"<{t}{a}>{''.join(kids)}", st.sampled_from(_TAGS), _ATTRS,  # never closed
              st.lists(inner, max_size=3)),
    st.builds(lambda t, kids: f"</{t}>{''.join(kids)}", st.sampled_from(_TAGS), st.lists(inner, max_size=2))),
    max_leaves=10)
_page = st.one_of(_html, st.binary(max_size=80).map(lambda b: b.decode("utf-8", "replace")),
                  st.binary(max_size=80).map(lambda b: b.decode("latin-1")))


@SETTINGS
@given(page=_page, human=st.one_of(st.just("Write a poem"), _page))
def test_sharegpt_pages(tmp_path_factory, page, human):
    """A ShareGPT answer of any page markup: converted to markdown (no page counter left) or counted as
    a drop, never a traceback."""
    root = tmp_path_factory.mktemp("page")
    conv = {"id": "p", "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": page}]}
    _write_jsonl(root / "d.jsonl", [conv])

    def clean():
        result = clean_file(root / "d.jsonl", FAST_CLEAN, progress=False)
        _funnel_adds_up(result)
        for rec in result.records:
            answer = rec["conversations"][1]["value"]
            assert not re.match(r"\s*\d{1,3} / \d{1,3}[ \t]*\n", answer), answer  # the page counter is gone

    _only_user_errors(clean, root)


# ------------------------------------------------------------------------------ tokenizer files

_TOKENIZER_FILES = ("tokenizer_config.json", "chat_template.jinja")


@lru_cache(maxsize=None)
def _real_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


@lru_cache(maxsize=1)
def _small_tokenizer_json() -> bytes:
    """A real byte-level BPE tokenizer.json with SmolLM2's special tokens and 300 pieces: the file
    beside a garbled config loads in milliseconds (SmolLM2's own 49K-piece file takes 0.3 s)."""
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel()
    tk.train_from_iterator(["hello world, a small tokenizer"] * 4, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    return tk.to_str().encode()


# SmolLM2's tokenizer_config.json keys (bos_token, model_max_length, tokenizer_class, ...)
_CONFIG_KEYS = ["add_prefix_space", "backend", "bos_token", "clean_up_tokenization_spaces", "eos_token", "legacy",
                "model_max_length", "model_type", "pad_token", "tokenizer_class", "unk_token", "added_tokens_decoder"]


@SETTINGS
@given(which=st.sampled_from(["tokenizer.json", "tokenizer_config.json", "tokenizer.model"]),
       body=st.one_of(raw, st.builds(lambda v: json.dumps(v, default=str).encode(), values),
                      st.floats(0, 1).map(lambda f: ("cut", f)),
                      st.dictionaries(st.sampled_from(_CONFIG_KEYS), values, min_size=1, max_size=2)))
def test_tokenizer_files(tmp_path_factory, embedded_model, which, body):
    """A tokenizer directory with one file replaced by anything, or a real file cut short (the embedded
    SmolLM2 files; Mistral's 32K SentencePiece tokenizer.model): a tokenizer, or one line."""
    root = tmp_path_factory.mktemp("tok")
    for name in _TOKENIZER_FILES:
        (root / name).write_bytes(_real_bytes(str(embedded_model / name)))
    (root / "tokenizer.json").write_bytes(_small_tokenizer_json())
    if isinstance(body, tuple):  # a real file cut at a fraction of its length
        real = _real_bytes(mistral_sp_model() if which == "tokenizer.model" else str(embedded_model / which))
        body = real[: int(len(real) * body[1])]
    elif isinstance(body, dict):  # the real config with any values for its own keys
        which = "tokenizer_config.json"
        body = json.dumps({**json.loads(_real_bytes(str(embedded_model / which))), **body}, default=str).encode()
    (root / which).write_bytes(body)
    def load():
        if which == "tokenizer.model":  # what `vocab extend --base` reads
            assert len(read_sentencepiece(root / which)) == len(_real_bytes(mistral_sp_model()))
        else:  # what training, cleaning and `vocab resize` load
            ids = load_tokenizer(str(root))("hello world")["input_ids"]
            assert ids and all(isinstance(i, int) for i in ids)

    _only_user_errors(load, root)
