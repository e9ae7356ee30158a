"""Reference metrics that need no judge: ROUGE-L against reference answers, and the
perplexity of the reference answers under each local model (as GPT4All reported).

ROUGE-L is language-aware with the same tokens as the generation phase's novelty rule
(`lib.core.text.tokens`): rouge_score's tokens for Latin text, one token per CJK
character -- rouge_score's own tokenizer drops every Chinese character and would score
every Chinese answer 0. The longest common subsequence comes from rapidfuzz.

Perplexity is exp(mean negative log-likelihood) of the reference answer's tokens given the
question rendered in that model's prompt format; the prompt's own tokens are not scored.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from rapidfuzz.distance import LCSseq

from lib.core.formats import turns_to_messages
from lib.core.masking import MaskingError, encode_example
from lib.core.text import tokens
from lib.evaluate.questions import Question


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of two texts (0.0 when either has no tokens)."""
    p, r = tokens(prediction), tokens(reference)
    if not p or not r:
        return 0.0
    lcs = LCSseq.similarity(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def answer_length(text: str) -> int:
    """Length in language-aware tokens (words; CJK characters), for length-vs-win reporting."""
    return len(tokens(text))


def rouge_table(questions: list[Question], answers: dict[str, dict[str, list[str]]]) -> dict:
    """Mean ROUGE-L F1 per model over every turn that has a reference, overall and by language."""
    out = {}
    for model, by_q in answers.items():
        scores, by_lang = [], defaultdict(list)
        for q in questions:
            if not q.reference or q.question_id not in by_q:
                continue
            for ans, ref in zip(by_q[q.question_id], q.reference):
                s = rouge_l(ans, ref)
                scores.append(s)
                by_lang[q.lang].append(s)
        if scores:
            out[model] = {"rouge_l": float(np.mean(scores)), "n": len(scores),
                          "by_lang": {k: float(np.mean(v)) for k, v in sorted(by_lang.items())}}
    return out


def reference_perplexity(model_dir: str, prompt_format: str, questions: list[Question], batch_size: int = 8) -> dict:
    """Perplexity of the reference answers under one local checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    examples = []  # (prompt ids, answer ids): the reference scored exactly as training would label it
    for q in questions:
        for i, ref in enumerate(q.reference or []):
            if i >= len(q.turns):
                break
            messages = turns_to_messages(q.turns[: i + 1], list(q.reference[:i])) + [{"role": "assistant", "content": ref}]
            try:
                ids, spans = encode_example(prompt_format, messages, tok)
            except MaskingError:  # e.g. a token spans the prompt/answer boundary: no honest split
                continue
            start, end = spans[-1]
            examples.append((ids[:start], ids[start:end]))
    if not examples:
        return {"perplexity": math.nan, "tokens": 0}
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    nll, count = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(examples), batch_size):
            chunk = examples[s:s + batch_size]
            width = max(len(p) + len(a) for p, a in chunk)
            ids = torch.full((len(chunk), width), pad)
            labels = torch.full((len(chunk), width), -100)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, (p, a) in enumerate(chunk):
                seq = p + a
                ids[j, : len(seq)] = torch.tensor(seq)
                labels[j, len(p): len(seq)] = torch.tensor(a)  # only the answer is scored
                mask[j, : len(seq)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            target = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            nll += float(loss)
            count += int((target != -100).sum())
    return {"perplexity": math.exp(nll / count), "tokens": count}
