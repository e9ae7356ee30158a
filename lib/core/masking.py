"""Token ids and loss labels for instruction tuning: one tokenization per example.

One tokenization from training to serving: training labels its examples here, and cleaning
(the token budget), evaluation (prompts and reference perplexity), serving and the launch plan
(exact token counts) take their ids from here too, so this module sits in the core layer.

Every example is rendered whole -- the Alpaca prompt + response + EOS, the whole Vicuna
v1.1 conversation, or the model's own chat template over the whole conversation
(`lib.core.formats.render_example`) -- and that text is tokenized ONCE. Stanford Alpaca does the
same: it tokenizes prompt+response as one string and uses the separately tokenized prompt
only to count how many labels to mask; FastChat tokenizes the whole Vicuna conversation
once and counts each turn's tokens to mask. Tokenizing pieces separately and concatenating
them (what this module once did) is not the same thing: SentencePiece puts a "▁" before
every piece, so answers start with tokens the model never sees at inference.

Labels come from verified prefix tokenizations, not from token counting: for each answer,
the prompt it answers (`lib.core.formats.render_prompt`, what inference sends) is tokenized on its
own and must be exactly the first tokens of the example. This is the invariant the module
enforces (`_boundary`): every prompt prefix the model trains on has the ids inference sends
for that prompt, and the labelled ids after it are what the model must generate there. If
a tokenizer merges characters across the prompt/answer boundary, no such split exists; the
example is dropped and counted ("boundary merge"), never silently shifted by a token
(which is what count-based masking does, see docs/fidelity.md).

Rules (each one is a bug seen in the wild, see docs/architecture.md and issue 5):

* Only response / assistant tokens and the EOS that ends them carry labels; every prompt,
  system and role-header token is -100. A model that never sees EOS in its labels never
  learns to stop.
* A conversation the format cannot render as one prefix-consistent text (a chat template
  whose rendering of turn i does not start with the prompt it serves for turn i) is
  *reported*, never mis-masked or zeroed.
* Deliberate deviations from the originals (docs/fidelity.md): truncation never drops EOS
  (an overlong answer is cut and still ends in EOS, counted as `truncated`; Alpaca and
  FastChat cut it off); a sample whose prompt alone leaves no room for one answer token
  plus EOS is dropped and counted (the originals keep it with no label at all); empty
  answers and conversations that start with the assistant are dropped and counted.

    examples, report = encode_records(records, tokenizer, fmt="alpaca", max_length=512)
    print(report.summary())
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from lib.core.errors import UserError
from lib.core.formats import RenderError, check_format, render_example, render_prompt, sharegpt_to_messages
from lib.core.text import lone_surrogate

IGNORE_INDEX = -100


class MaskingError(ValueError):
    """This one sample cannot be masked correctly; the reason goes to the report."""


@dataclass
class MaskingReport:
    total: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    samples: list[dict] = field(default_factory=list)  # first few dropped ids with reasons
    label_tokens: int = 0
    tokens: int = 0

    def drop(self, rec_id, reason: str) -> None:
        self.dropped[reason.split(":")[0]] += 1
        if len(self.samples) < 20:
            self.samples.append({"id": rec_id, "reason": reason})

    def as_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "truncated": self.truncated,
                "dropped": dict(self.dropped), "dropped_samples": self.samples,
                "tokens": self.tokens, "label_tokens": self.label_tokens}

    def summary(self) -> str:
        drops = ", ".join(f"{k}: {v}" for k, v in self.dropped.items()) or "none"
        return (f"masking: kept {self.kept}/{self.total} samples ({self.truncated} truncated, EOS kept); "
                f"dropped: {drops}; {self.label_tokens}/{self.tokens} tokens carry labels")


def eos_id(tok) -> int:
    if tok.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token: set tokenizer.eos_token (the model could never learn to stop)")
    return tok.eos_token_id


def ensure_pad_token(tok) -> bool:
    """Give the tokenizer a pad token distinct from EOS. Returns True when a token was added
    (the caller must then resize the model's embeddings). Labels never depend on the pad id
    (collators pad labels with -100), but a pad==EOS tokenizer invites masking EOS as padding."""
    if tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id:
        return False
    for cand in ("<|endoftext|>", "<pad>", "<unk>", "[PAD]"):
        tid = tok.convert_tokens_to_ids(cand) if cand in tok.get_vocab() else None
        if tid is not None and tid != tok.eos_token_id:
            tok.pad_token = cand
            return False
    tok.add_special_tokens({"pad_token": "<|pad|>"})
    return True


def bos_prefix(tok) -> list[int]:
    """The BOS the tokenizer's own post-processor would put in front (LLaMA yes, GPT-2 no)."""
    if tok.bos_token_id is None:
        return []
    ids = tok("a", add_special_tokens=True)["input_ids"]
    return [tok.bos_token_id] if ids and ids[0] == tok.bos_token_id else []


def encode_text(fmt: str, text: str, tok) -> list[int]:
    """Ids of a rendered text, as training and inference both tokenize it. Chat templates
    write their own special tokens; the Alpaca and Vicuna strings get the BOS the
    tokenizer's own post-processor would put first."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return ids if fmt == "chat" else bos_prefix(tok) + ids


def prompt_ids(fmt: str, messages: list[dict], tok) -> list[int]:
    """The ids a model of format `fmt` is sent for its next answer (messages end on a user turn)."""
    return encode_text(fmt, render_prompt(fmt, messages, tok), tok)


def _check_alpaca_fields(record: dict) -> None:
    for key in ("instruction", "input", "output"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise MaskingError(f"malformed record: field {key!r} is {type(record[key]).__name__}, not text")


def alpaca_messages(record: dict) -> list[dict]:
    """An Alpaca record as one exchange; the instruction keeps its bytes (Alpaca does not strip)."""
    _check_alpaca_fields(record)
    instruction = record.get("instruction") or ""
    output = record.get("output") or ""
    if not instruction.strip():
        raise MaskingError("empty instruction: nothing to condition on")
    if not output.strip():
        raise MaskingError("empty response: there would be no tokens to learn")
    return [{"role": "user", "content": instruction, "input": record.get("input") or ""},
            {"role": "assistant", "content": output}]


def record_messages(record: dict) -> list[dict]:
    """A ShareGPT conversation or an Alpaca record as chat messages."""
    if "conversations" in record:
        try:
            return sharegpt_to_messages(record["conversations"])
        except (KeyError, TypeError) as e:
            raise MaskingError(f"malformed conversation: unknown speaker or field {e}") from None
    if "messages" in record:
        if not isinstance(record["messages"], list):
            raise MaskingError("malformed conversation: 'messages' is not a list of {role, content}")
        return list(record["messages"])
    _check_alpaca_fields(record)
    user = (record.get("instruction") or "").strip()
    if (record.get("input") or "").strip():
        user += "\n\n" + record["input"].strip()
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record.get("output") or ""}]


ROLES = ("system", "user", "assistant")


def _check_shape(messages: list) -> None:
    """Every turn a {role, content} of a known role with text content (an Alpaca turn's "input" too)."""
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise MaskingError(f"malformed conversation: turn {k} is not a {{role, content}} with role "
                               f"{', '.join(ROLES)}")
        for key in ("content", "input"):
            value = m.get(key)
            if key == "content" and value is None:
                raise MaskingError(f"malformed conversation: turn {k} has no content")
            if value is not None and not isinstance(value, str):
                raise MaskingError(f"malformed conversation: turn {k}'s {key} is {type(value).__name__}, not text")
            if value and lone_surrogate(value):
                raise MaskingError(f"malformed text: turn {k}'s {key} holds a lone surrogate "
                                   f"({lone_surrogate(value)}), which no tokenizer encodes")


def _check_turns(messages: list[dict]) -> None:
    _check_shape(messages)
    body = [m for m in messages if m["role"] != "system"]
    if not any(m["role"] == "assistant" for m in body):
        raise MaskingError("no assistant turn: nothing to learn")
    if body and body[0]["role"] != "user":
        raise MaskingError("conversation starts with the assistant: no prompt for its first answer")
    for m in body:
        if m["role"] == "assistant" and not (m.get("content") or "").strip():
            raise MaskingError("empty assistant turn: nothing to learn")


def _boundary(ids: list[int], fmt: str, text: str, at: int, tok, what: str) -> int:
    """Number of leading tokens of `ids` that spell exactly text[:at].

    Invariant: text[:at] tokenized on its own (for a prompt: exactly what inference sends)
    must be a prefix of the example's ids. Otherwise a token straddles the boundary and no
    label split is honest: the example is reported instead of shifted."""
    if at == len(text):
        return len(ids)
    head = encode_text(fmt, text[:at], tok)
    if ids[: len(head)] != head:
        raise MaskingError(f"boundary merge: a token spans the {what} boundary, so the prompt the model "
                           "would train on differs from the one inference sends")
    return len(head)


def encode_example(fmt: str, messages: list[dict], tok) -> tuple[list[int], list[tuple[int, int]]]:
    """The example's ids (one tokenization) and the [start, end) token span of every answer+EOS."""
    _check_turns(messages)
    eos = eos_id(tok)
    try:
        text, spans = render_example(fmt, messages, tok)
    except RenderError as e:
        raise MaskingError(f"tokenization mismatch: {e}") from None
    ids = encode_text(fmt, text, tok)
    out = []
    for n, (a, b) in enumerate(spans, 1):
        start = _boundary(ids, fmt, text, a, tok, f"prompt/answer {n}")
        end = _boundary(ids, fmt, text, b, tok, f"answer {n}/EOS")
        if end <= start + 1 or ids[end - 1] != eos:
            raise MaskingError(f"answer {n} does not end in EOS ({tok.eos_token!r}) once tokenized")
        out.append((start, end))
    return ids, out


def fit(ids: list[int], spans: list[tuple[int, int]], max_length: int, eos: int) -> tuple[list[int], list[int], bool]:
    """Labels for the trained spans, cut to max_length; an answer that does not fit is cut and ends in EOS."""
    labels = [IGNORE_INDEX] * len(ids)
    if len(ids) <= max_length:
        for s, e in spans:
            labels[s:e] = ids[s:e]
        return ids, labels, False
    keep = 0
    ids = list(ids)
    for s, e in spans:
        if e <= max_length:
            labels[s:e] = ids[s:e]
            keep = e
            continue
        if max_length - s >= 2:  # at least one answer token, then EOS (Alpaca/FastChat drop it)
            ids[max_length - 1] = eos
            labels[s:max_length] = ids[s:max_length]
            keep = max_length
        break
    if keep == 0:
        raise MaskingError(f"prompt too long: no room for an answer within max_length={max_length}")
    return ids[:keep], labels[:keep], True


def encode_record(record: dict, tok, fmt: str, max_length: int) -> tuple[dict, bool]:
    check_format(fmt, tok)
    if not isinstance(record, dict):
        raise MaskingError(f"malformed record: a {type(record).__name__}, not a JSON object")
    messages = alpaca_messages(record) if fmt == "alpaca" else record_messages(record)
    ids, spans = encode_example(fmt, messages, tok)
    ids, labels, truncated = fit(ids, spans, max_length, eos_id(tok))
    return {"input_ids": ids, "labels": labels}, truncated


def encode_records(records, tok, *, fmt: str, max_length: int) -> tuple[list[dict], MaskingReport]:
    """Encode every record; samples that cannot be masked are dropped and reported."""
    if max_length < 8:
        raise UserError(f"max_length={max_length} is too small: use at least 8 tokens")
    report = MaskingReport()
    out = []
    for i, rec in enumerate(records):
        report.total += 1
        try:
            ex, truncated = encode_record(rec, tok, fmt, max_length)
        except MaskingError as e:
            report.drop(rec.get("id", i) if isinstance(rec, dict) else i, str(e))
            continue
        report.kept += 1
        report.truncated += truncated
        report.tokens += len(ex["input_ids"])
        report.label_tokens += sum(lab != IGNORE_INDEX for lab in ex["labels"])
        out.append(ex)
    return out, report


def encode_preference(fmt: str, prompt: list[dict], chosen: str, rejected: str, tok,
                      max_length: int) -> tuple[dict, bool]:
    """A preference pair as DPO trains on it: {"prompt_ids", "chosen_ids", "rejected_ids"}.

    Each side is the whole example (prompt + answer + EOS) tokenized once, as SFT does, and
    cut at the verified prompt boundary (`encode_example`): `prompt_ids` are exactly the ids
    inference sends for `prompt` (`prompt_ids`), the same for both sides, and each answer ends
    in EOS. Too long: the answer is cut and still ends in EOS (`fit`); returns (pair, truncated).
    An empty answer (a model that stopped at once, often the rejected side) is EOS alone: what
    inference generates when it answers nothing (SFT drops such turns; a preference can rank them)."""
    check_format(fmt, tok)
    if not prompt or prompt[-1].get("role") != "user":
        raise MaskingError("the prompt must end on a user turn: nothing to answer")
    eos = eos_id(tok)
    head = prompt_ids(fmt, prompt, tok)
    sides, truncated = {}, False
    for name, answer in (("chosen", chosen), ("rejected", rejected)):
        if not answer.strip():
            sides[name] = [eos]
            continue
        ids, spans = encode_example(fmt, [*prompt, {"role": "assistant", "content": answer}], tok)
        start, end = spans[-1]
        ids, _, cut = fit(ids[:end], [(start, end)], max_length, eos)
        if ids[:start] != head:
            raise MaskingError(f"boundary merge: the {name} example's prompt ids differ from the inference prompt's")
        sides[name], truncated = ids[start:], truncated or cut
    return {"prompt_ids": head, "chosen_ids": sides["chosen"], "rejected_ids": sides["rejected"]}, truncated
