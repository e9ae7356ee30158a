"""What a logged teacher reply yields: parse, filter, dedupe, keep -- deterministically.

A `Harvest` turns replies, in response-log order, into kept Alpaca records and rejections.
It reads no clock, no network and no disk: the same replies in the same order under the
same settings give the same records, which is what lets recovery (journal.py) rebuild it
from the response log after a crash and check generated.jsonl against it.
"""
from __future__ import annotations

from collections import Counter

from lib.generate.config import GenerateConfig
from lib.generate.filters import filter_reason
from lib.generate.novelty import NoveltyFilter
from lib.generate.parse import parse_tasks
from lib.generate.prompt import Request
from lib.generate.seeds import SeedTask
from lib.core.text import guess_lang

ANSWER_SUFFIX = "-answer"  # request id of the follow-up that answers task <list request id>-<item>


class Harvest:
    def __init__(self, seeds: list[SeedTask], cfg: GenerateConfig, default_model: str):
        self.cfg = cfg
        self.seeds = seeds
        self.default_model = default_model  # the source label when a reply names no model
        self.filter = NoveltyFilter(threshold=cfg.similarity_threshold)
        self.filter.extend(t.instruction for t in seeds)
        self.records: list[dict] = []  # kept, in order
        self.pending_answers: dict[str, dict] = {}  # listed tasks waiting for their answer
        self.rejected: list[dict] = []
        self.rejected_counts: Counter = Counter()

    def short_of_target(self) -> bool:
        """True while kept + awaiting-an-answer is below the target (new lists are worth asking)."""
        return len(self.records) + len(self.pending_answers) < self.cfg.num_instructions_to_generate

    def process(self, resp: dict) -> list[dict]:
        """Parse and filter one logged reply; returns the records it adds."""
        if resp.get("kind") == "answer":
            return self._process_answer(resp)
        cfg = self.cfg
        items, dropped = parse_tasks(resp["text"], first_number=cfg.num_examples + 1,
                                     finish_reason=resp.get("finish_reason"))
        rej = []
        kept = []
        candidates = [(it.position, it.instruction, it.input, it.output) for it in items]
        for d in dropped:
            if d.reason == "no_output" and cfg.answer_missing_outputs and not cfg.use_batch_api:
                candidates.append((d.position, d.instruction, d.input, None))
            else:
                rej.append({"request_id": resp["request_id"], "reason": d.reason, "text": d.text[:500]})
        candidates.sort()
        for position, instruction, inp, output in candidates:
            rid = f"{resp['request_id']}-{position}"
            if len(self.records) + len(kept) + len(self.pending_answers) >= cfg.num_instructions_to_generate:
                reason = "over_target"
            else:
                reason = filter_reason(instruction, language=cfg.language)
            if reason is None and not self.filter.add(instruction):
                reason = "similar"
            if reason:
                rej.append({"request_id": resp["request_id"], "reason": reason, "text": instruction[:500]})
                continue
            rec = {"id": rid, "instruction": instruction, "input": inp, "output": output,
                   "source": f"{cfg.source}:{resp.get('model') or self.default_model}",
                   "lang": guess_lang(instruction)}
            if output is None:
                self.pending_answers[rid] = rec  # kept once the follow-up request answers it
            else:
                kept.append(rec)
        return self._commit(kept, rej)

    def _process_answer(self, resp: dict) -> list[dict]:
        rid = resp["request_id"].removesuffix(ANSWER_SUFFIX)
        rec = self.pending_answers.pop(rid, None)
        if rec is None:  # not pending under these settings (e.g. over target): nothing to add
            return []
        text = (resp.get("text") or "").strip()
        if resp.get("finish_reason") == "length" or not text:
            reason = "answer_truncated" if text else "answer_empty"
            return self._commit([], [{"request_id": resp["request_id"], "reason": reason, "text": rec["instruction"][:500]}])
        return self._commit([{**rec, "output": text, "source": rec["source"] + "+answer"}], [])

    def _commit(self, kept: list[dict], rej: list[dict]) -> list[dict]:
        self.records.extend(kept)
        self.rejected.extend(rej)
        for r in rej:
            self.rejected_counts[r["reason"]] += 1
        return kept

    def answer_request(self, rid: str) -> Request:
        """The follow-up request that answers pending task `rid` (deterministic id and prompt)."""
        rec = self.pending_answers[rid]
        content = rec["instruction"] + (f"\n\n{rec['input']}" if rec["input"] else "")
        list_index = int(rid.split("-")[2])
        position = int(rid.rsplit("-", 1)[1])
        return Request(id=rid + ANSWER_SUFFIX, index=list_index * 1000 + position, seed_ids=(),
                       messages=({"role": "user", "content": content},), first_number=0, kind="answer")
