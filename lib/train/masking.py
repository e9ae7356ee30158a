"""Token ids and loss labels for instruction tuning, built so that the mask can be trusted.

Rules (each one is a bug seen in the wild, see docs/architecture.md and issue 5):

* Only response / assistant tokens and the EOS that ends them carry labels; every prompt,
  system and role-header token is -100. A model that never sees EOS in its labels never
  learns to stop.
* Text is tokenized turn by turn: the prompt and the response are tokenized as separate
  pieces (Alpaca, Vicuna v1.1), or the model's own chat template is rendered for growing
  prefixes of the conversation and each prefix's token ids must be a prefix of the next
  one's. Nothing is located by string offsets, so a template whose tokenization is not
  prefix-stable is *reported*, never silently mis-masked or zeroed.
* Truncation never drops EOS silently: an overlong answer is cut and still ends in EOS
  (counted as `truncated`); a sample whose prompt alone leaves no room for one answer
  token plus EOS is dropped and counted with its reason.

    examples, report = encode_records(records, tokenizer, fmt="alpaca", max_length=512)
    print(report.summary())
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from lib.errors import UserError
from lib.train.templates import VICUNA_V1_1, alpaca_prompt, sharegpt_to_messages

IGNORE_INDEX = -100
FORMATS = ("alpaca", "vicuna_v1.1", "chat")


class MaskingError(ValueError):
    """This one sample cannot be masked correctly; the reason goes to the report."""


@dataclass
class Segment:
    ids: list[int]
    trained: bool  # assistant/response tokens (+EOS); False for prompt, system, headers
    eos_at: int | None = None  # index of the EOS inside a trained segment


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


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def alpaca_segments(record: dict, tok) -> list[Segment]:
    instruction = (record.get("instruction") or "").strip()
    output = record.get("output") or ""
    if not instruction:
        raise MaskingError("empty instruction: nothing to condition on")
    if not output.strip():
        raise MaskingError("empty response: there would be no tokens to learn")
    prompt = bos_prefix(tok) + _ids(tok, alpaca_prompt(instruction, record.get("input") or ""))
    response = _ids(tok, output) + [eos_id(tok)]
    return [Segment(prompt, False), Segment(response, True, eos_at=len(response) - 1)]


def record_messages(record: dict) -> list[dict]:
    """A ShareGPT conversation or an Alpaca record as chat messages."""
    if "conversations" in record:
        try:
            return sharegpt_to_messages(record["conversations"])
        except (KeyError, TypeError) as e:
            raise MaskingError(f"malformed conversation: unknown speaker or field {e}") from None
    if "messages" in record:
        return list(record["messages"])
    user = (record.get("instruction") or "").strip()
    if (record.get("input") or "").strip():
        user += "\n\n" + record["input"].strip()
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record.get("output") or ""}]


def _check_turns(messages: list[dict]) -> None:
    body = [m for m in messages if m["role"] != "system"]
    if not any(m["role"] == "assistant" for m in body):
        raise MaskingError("no assistant turn: nothing to learn")
    if body and body[0]["role"] != "user":
        raise MaskingError("conversation starts with the assistant: no prompt for its first answer")
    for m in body:
        if m["role"] == "assistant" and not (m.get("content") or "").strip():
            raise MaskingError("empty assistant turn: nothing to learn")


def vicuna_segments(messages: list[dict], tok, template=VICUNA_V1_1) -> list[Segment]:
    _check_turns(messages)
    eos = eos_id(tok)
    segs = [Segment(bos_prefix(tok) + _ids(tok, template.system_prefix(messages)), False)]
    first = True
    for m in messages:
        if m["role"] == "user":
            segs.append(Segment(_ids(tok, template.user_piece(m["content"], after_system=first)), False))
            first = False
        elif m["role"] == "assistant":
            ids = _ids(tok, template.assistant_piece(m["content"])) + [eos]
            segs.append(Segment(ids, True, eos_at=len(ids) - 1))
    return segs


def chat_template_segments(messages: list[dict], tok) -> list[Segment]:
    """Segments from the tokenizer's own chat template, rendered for growing prefixes."""
    if not getattr(tok, "chat_template", None):
        raise UserError("the tokenizer has no chat template: use template 'vicuna_v1.1' for this model")
    _check_turns(messages)
    eos = eos_id(tok)

    def render(msgs, gen):
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        return _ids(tok, text)

    segs: list[Segment] = []
    done: list[int] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = render(messages[:i], True)
        full = render(messages[: i + 1], False)
        if prompt[: len(done)] != done or full[: len(prompt)] != prompt:
            raise MaskingError(f"tokenization mismatch at turn {i}: the chat template is not prefix-stable")
        answer = full[len(prompt):]
        if eos not in answer:
            raise MaskingError(f"turn {i} does not end in EOS ({tok.eos_token!r}) under the chat template")
        k = len(answer) - 1 - answer[::-1].index(eos)
        segs.append(Segment(prompt[len(done):], False))
        segs.append(Segment(answer[: k + 1], True, eos_at=k))
        if answer[k + 1:]:  # e.g. the newline after <|im_end|>: context, not a target
            segs.append(Segment(answer[k + 1:], False))
        done = full
    return segs


def fit(segments: list[Segment], max_length: int, eos: int) -> tuple[list[int], list[int], bool]:
    """Concatenate segments up to max_length; an answer that does not fit is cut and ends in EOS."""
    ids: list[int] = []
    labels: list[int] = []
    truncated = False
    for seg in segments:
        if len(ids) + len(seg.ids) <= max_length:
            ids += seg.ids
            labels += seg.ids if seg.trained else [IGNORE_INDEX] * len(seg.ids)
            continue
        truncated = True
        room = max_length - len(ids)
        if seg.trained and room >= 2:  # at least one answer token, then EOS
            cut = seg.ids[: min(room - 1, seg.eos_at)] + [eos]
            ids += cut
            labels += cut
        break
    if all(lab == IGNORE_INDEX for lab in labels):
        raise MaskingError(f"prompt too long: no room for an answer within max_length={max_length}")
    return ids, labels, truncated


def encode_record(record: dict, tok, fmt: str, max_length: int) -> tuple[dict, bool]:
    if fmt == "alpaca":
        segs = alpaca_segments(record, tok)
    elif fmt == "vicuna_v1.1":
        segs = vicuna_segments(record_messages(record), tok)
    elif fmt == "chat":
        segs = chat_template_segments(record_messages(record), tok)
    else:
        raise UserError(f"unknown prompt format {fmt!r}: use one of {', '.join(FORMATS)}")
    ids, labels, truncated = fit(segs, max_length, eos_id(tok))
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
            report.drop(rec.get("id", i), str(e))
            continue
        report.kept += 1
        report.truncated += truncated
        report.tokens += len(ex["input_ids"])
        report.label_tokens += sum(lab != IGNORE_INDEX for lab in ex["labels"])
        out.append(ex)
    return out, report
