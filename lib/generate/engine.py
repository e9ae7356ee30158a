"""The self-instruct generator: concurrent, crash-safe, budget-capped.

    gen = Generator(run_dir, endpoint, seeds, GenerateConfig(num_instructions=100),
                    ledger=ctx.ledger, budgets=ctx.budgets)
    summary = gen.run()          # resumes whatever a killed run left behind

Files (under run_dir/data/):
    generated.jsonl            Alpaca records kept so far (the contract with 02_clean)
    generate/responses.jsonl   every teacher reply, as received (append-only, fsynced)
    generate/rejected.jsonl    every dropped item and why (derived, rewritten atomically)
    generate/summary.json      counters, spend, cost per 1,000 kept (rewritten atomically)
    generate/batch.json        the Batch API job in flight, if any (see batch.py)

Crash safety, and why the order of writes matters:
1. Request *i* has the deterministic id `gen-<run_seed>-<i>` and a prompt that is a pure
   function of (seeds, run_seed, i).
2. When its reply arrives it is appended to responses.jsonl (one write + fsync) BEFORE
   anything else. The response log is the source of truth; everything else is derived.
3. Then the ledger gets the call under record_id `api:<request id>`; the ledger keeps one
   record per id, so replaying it can never count a call twice.
4. Then the reply is parsed and filtered and its kept records are appended (one write +
   fsync for the whole reply) to generated.jsonl, with ids `<request id>-<item>`.
Parsing, the filters and the novelty rule are deterministic, so the kept records are a
function of the response log *in log order*. On start, `recover()` cuts torn last lines,
writes ledger records missing for logged replies (a kill between 2 and 3), replays the
log through a fresh filter and appends the kept records missing from generated.jsonl (a
kill between 2 and 4), after checking that what is there is exactly a prefix of the
replay. A kill before 2 loses only an unacknowledged reply; its request id is not in the
log, so it is sent again and recorded once. Hence: no duplicate records, no lost record,
every logged request in the ledger exactly once.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import openai

from lib.budget import api_cost
from lib.client import Endpoint, make_async_client
from lib.errors import BudgetExceeded, UserError
from lib.generate.filters import filter_reason
from lib.generate.novelty import NoveltyFilter
from lib.generate.parse import parse_tasks
from lib.generate.prompt import Request, make_request
from lib.generate.seeds import SeedTask
from lib.generate.store import AppendLog, read_jsonl, repair_tail, write_json_atomic
from lib.generate.tokenizer import detect_lang

CHAT_OVERHEAD_TOKENS = 16
ANSWER_SUFFIX = "-answer"  # request id of the follow-up that answers task <list request id>-<item>  # role markers and the assistant header of a chat template


@dataclass
class GenerateConfig:
    num_instructions: int = 100  # stop once this many records are kept
    tasks_per_request: int = 20  # how many new tasks the prompt asks for (Alpaca: 20)
    num_examples: int = 3  # seed tasks shown in each prompt (Alpaca: 3)
    concurrency: int = 8  # requests in flight at once
    max_tokens: int = 3072  # completion limit per request (also the worst case reserved)
    temperature: float = 1.0
    top_p: float = 1.0
    language: str = "en"  # language the tasks are asked for: "en" or "zh"
    run_seed: int = 0  # seeds the per-request sampling of examples
    similarity_threshold: float = 0.7  # ROUGE-L F above which an instruction is a near-duplicate
    max_requests: int = 0  # 0 = no limit besides the target and the budget
    max_retries: int = 6  # per request, on 429 / 5xx / timeouts / connection errors
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    request_timeout_s: float = 600.0
    use_batch_api: bool = False  # OpenAI Batch API: half price, results within 24 h
    batch_poll_s: float = 10.0
    batch_max_requests: int = 1000  # requests per batch job
    source: str = "self-instruct"
    # `transformers serve` ignores `temperature` unless the model's generation config
    # samples; for the embedded server we send its own generation config with sampling on.
    server_generation_config: bool = False
    repetition_penalty: float = 1.0  # only sent through server_generation_config
    topic_hints: bool = False  # name a random everyday topic in each prompt (steers tiny teachers)
    # Self-Instruct's second step for listed tasks that came without an output: if the
    # instruction passes the filters and the novelty rule, ask the teacher for its answer in
    # a follow-up request. Alpaca drops them; tiny teachers often list tasks without answers.
    answer_missing_outputs: bool = False  # online mode only (a Batch API round has no follow-ups)
    answer_max_tokens: int = 160
    time_limit_s: float = 0.0  # stop sending new requests after this many seconds (0 = no limit)


def prompt_token_bound(messages) -> int:
    """An upper bound on prompt tokens without the teacher's tokenizer.

    Every byte-level BPE token (GPT-4o, Llama, SmolLM...) covers at least one UTF-8 byte,
    so bytes + the chat template's few tokens bound the count from above.
    """
    return sum(len(m["content"].encode("utf-8")) + 4 for m in messages) + CHAT_OVERHEAD_TOKENS


def billing_endpoint(ep: Endpoint):
    """What the ledger should price this endpoint as.

    An explicit `price_model` means "charge these calls as if they went to that model",
    also on a local server (to rehearse a paid run, or to test the cap); without it a
    local server is $0.
    """
    if ep.is_local and ep.price_model:
        return SimpleNamespace(is_local=False, model=ep.model, base_url=ep.base_url, price_model=ep.price_model)
    return ep


def retry_after_s(err: Exception) -> float | None:
    """Seconds the server asked us to wait (Retry-After / retry-after-ms), if it said."""
    resp = getattr(err, "response", None)
    headers = getattr(resp, "headers", None) or {}
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return float(ra)
    except ValueError:
        when = email.utils.parsedate_to_datetime(ra)
        return max(0.0, when.timestamp() - time.time()) if when else None


def retry_reason(err: Exception) -> str | None:
    """The counter a retryable error goes to, or None when retrying cannot help."""
    if isinstance(err, openai.APITimeoutError):
        return "timeout"
    if isinstance(err, openai.APIConnectionError):
        return "connection"
    if isinstance(err, openai.RateLimitError):
        return "429"
    if isinstance(err, openai.APIStatusError):
        if err.status_code >= 500:
            return "5xx"
        if err.status_code in (408, 409):
            return str(err.status_code)
    return None


# Fault injection for the kill -9 tests: SHEAR_GENERATE_CRASH="<point>:<n>" SIGKILLs this
# process at the n-th time (1-based) it reaches <point>; "log" and "records" first write
# half of a line, i.e. die mid-write. Unset in normal runs, where this costs one dict lookup.
_CRASH_COUNTS: Counter = Counter()


def _crash_point(point: str, log: AppendLog | None = None) -> None:
    spec = os.environ.get("SHEAR_GENERATE_CRASH")
    if not spec:
        return
    name, _, n = spec.partition(":")
    if name != point:
        return
    _CRASH_COUNTS[point] += 1
    if _CRASH_COUNTS[point] != int(n or 1):
        return
    if log is not None:
        os.write(log._fd, b'{"torn": "half a line')
        os.fsync(log._fd)
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Progress:
    requests_done: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)
    usd: float = 0.0
    usd_reference: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_reason: str = ""

    def projected_usd(self, target: int) -> float | None:
        if not self.kept:
            return None
        return self.usd / self.kept * target


class Generator:
    def __init__(self, run_dir, endpoint: Endpoint, seeds: list[SeedTask], config: GenerateConfig, *,
                 ledger=None, budgets=None, phase: str = "data", show_progress: bool = True):
        self.run_dir = Path(run_dir)
        self.ep = endpoint
        self.seeds = seeds
        self.cfg = config
        self.ledger = ledger
        self.budgets = budgets
        self.phase = phase
        self.show_progress = show_progress
        self.data_dir = self.run_dir / "data"
        self.work_dir = self.data_dir / "generate"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.generated_path = self.data_dir / "generated.jsonl"
        self.responses_path = self.work_dir / "responses.jsonl"
        self.rejected_path = self.work_dir / "rejected.jsonl"
        self.summary_path = self.work_dir / "summary.json"
        self.billing = billing_endpoint(endpoint)
        self.price_model = getattr(self.billing, "price_model", None) or endpoint.model
        self.priced = not getattr(self.billing, "is_local", False)
        self.guard = None
        if budgets is not None and ledger is not None:
            from lib.budget import BudgetGuard

            self.guard = BudgetGuard(budgets, ledger, phase=phase)
        if self.priced:  # an unpriced paid model must fail before the first call, not after
            api_cost(self.price_model, 1, 1, prices=getattr(budgets, "prices", None))
        self.progress = Progress()
        self.filter = self._fresh_filter()
        self.records: list[dict] = []  # kept, in order
        self.pending_answers: dict[str, dict] = {}  # listed tasks waiting for their answer
        self.rejected: list[dict] = []
        self.logged_ids: set[str] = set()
        self.nearest: list[float] = []
        self._bar = None

    # -- deterministic processing ------------------------------------------------------
    def _fresh_filter(self) -> NoveltyFilter:
        f = NoveltyFilter(threshold=self.cfg.similarity_threshold)
        f.extend(t.instruction for t in self.seeds)
        return f

    def request(self, index: int) -> Request:
        return make_request(self.seeds, index, run_seed=self.cfg.run_seed, num_examples=self.cfg.num_examples,
                            num_tasks=self.cfg.tasks_per_request, language=self.cfg.language,
                            topic_hints=self.cfg.topic_hints)

    def _process(self, resp: dict) -> list[dict]:
        """Parse and filter one logged reply; returns the records it adds (deterministic)."""
        if resp.get("kind") == "answer":
            return self._process_answer(resp)
        items, dropped = parse_tasks(resp["text"], first_number=self.cfg.num_examples + 1,
                                     finish_reason=resp.get("finish_reason"))
        rej = []
        kept = []
        candidates = [(it.position, it.instruction, it.input, it.output) for it in items]
        for d in dropped:
            if d.reason == "no_output" and self.cfg.answer_missing_outputs and not self.cfg.use_batch_api:
                candidates.append((d.position, d.instruction, d.input, None))
            else:
                rej.append({"request_id": resp["request_id"], "reason": d.reason, "text": d.text[:500]})
        candidates.sort()
        for position, instruction, inp, output in candidates:
            rid = f"{resp['request_id']}-{position}"
            reason = None
            if len(self.records) + len(kept) + len(self.pending_answers) >= self.cfg.num_instructions:
                reason = "over_target"
            else:
                reason = filter_reason(instruction, language=self.cfg.language)
            if reason is None and not self.filter.add(instruction):
                reason = "similar"
            if reason:
                rej.append({"request_id": resp["request_id"], "reason": reason, "text": instruction[:500]})
                continue
            rec = {"id": rid, "instruction": instruction, "input": inp, "output": output,
                   "source": f"{self.cfg.source}:{resp.get('model') or self.ep.model}",
                   "lang": detect_lang(instruction)}
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
            self.progress.rejected[r["reason"]] += 1
        self.progress.kept = len(self.records)
        return kept

    def answer_request(self, rid: str) -> Request:
        """The follow-up request that answers pending task `rid` (deterministic id and prompt)."""
        rec = self.pending_answers[rid]
        content = rec["instruction"] + (f"\n\n{rec['input']}" if rec["input"] else "")
        list_index = int(rid.split("-")[2])
        position = int(rid.rsplit("-", 1)[1])
        return Request(id=rid + ANSWER_SUFFIX, index=list_index * 1000 + position, seed_ids=(),
                       messages=({"role": "user", "content": content},), first_number=0, kind="answer")

    def _account(self, resp: dict, rec: dict | None) -> None:
        u = resp.get("usage") or {}
        self.progress.requests_done += 1
        self.progress.prompt_tokens += int(u.get("prompt_tokens") or 0)
        self.progress.completion_tokens += int(u.get("completion_tokens") or 0)
        if rec is not None:
            self.progress.usd += float(rec.get("usd") or 0.0)
            self.progress.usd_reference += float(rec.get("usd_reference") or 0.0)

    def _ledger_record(self, resp: dict) -> dict | None:
        if self.ledger is None:
            return None
        return self.ledger.record_api(
            phase=self.phase, endpoint=self.billing, usage=resp.get("usage") or {}, request_id=resp.get("response_id"),
            batch=bool(resp.get("batch")), purpose="self-instruct", record_id=f"api:{resp['request_id']}")

    # -- recovery ----------------------------------------------------------------------
    def recover(self) -> None:
        """Rebuild state from disk after a crash (or a normal earlier run); see the module doc."""
        repair_tail(self.responses_path)
        repair_tail(self.generated_path)
        in_ledger = {}
        if self.ledger is not None:
            in_ledger = {r["id"]: r for r in self.ledger.records(kind="api", phase=self.phase)}
        self.filter = self._fresh_filter()
        self.records, self.rejected, self.logged_ids = [], [], set()
        self.pending_answers = {}
        self.progress = Progress()
        for resp in read_jsonl(self.responses_path):
            if resp["request_id"] in self.logged_ids:
                continue
            self.logged_ids.add(resp["request_id"])
            rec = in_ledger.get(f"api:{resp['request_id']}")
            if rec is None:
                rec = self._ledger_record(resp)
            self._account(resp, rec)
            self._process(resp)
        on_disk = [r["id"] for r in read_jsonl(self.generated_path)]
        expected = [r["id"] for r in self.records]
        if on_disk != expected[: len(on_disk)]:
            raise UserError(
                f"{self.generated_path} does not match {self.responses_path} under the current settings "
                "(seeds, language, threshold or target changed?): use a new run_dir, or the settings of the first run"
            )
        with AppendLog(self.generated_path) as out:
            out.append_many(self.records[len(on_disk):])

    # -- one reply ---------------------------------------------------------------------
    def ingest(self, req: Request, resp: dict, out: AppendLog, log: AppendLog) -> tuple[list[dict], float]:
        """Steps 2-4 of the module doc for one reply; returns (kept records, usd charged).

        No await inside: the order of the response log is the order of processing.
        """
        if req.id in self.logged_ids:
            return [], 0.0
        _crash_point("log", log)
        log.append(resp)
        self.logged_ids.add(req.id)
        _crash_point("after_log")
        rec = self._ledger_record(resp)
        self._account(resp, rec)
        _crash_point("after_ledger")
        kept = self._process(resp)
        _crash_point("records", out if kept else None)
        out.append_many(kept)
        self._update_bar(len(kept))
        return kept, float((rec or {}).get("usd") or 0.0)

    def response_record(self, req: Request, completion, *, batch: bool = False) -> dict:
        """What goes to the response log for one chat completion (an openai object or a dict)."""
        c = completion if isinstance(completion, dict) else completion.model_dump()
        choice = (c.get("choices") or [{}])[0]
        return {
            "request_id": req.id, "index": req.index, "seed_ids": list(req.seed_ids),
            "response_id": c.get("id"), "model": c.get("model"),
            "text": (choice.get("message") or {}).get("content") or "",
            "finish_reason": choice.get("finish_reason"), "usage": c.get("usage") or {},
            "batch": batch, "received": time.time(), "kind": req.kind,
        }

    def request_body(self, req: Request) -> dict:
        """The chat-completion request for `req` (also the body of a Batch API line)."""
        cfg = self.cfg
        max_tokens = cfg.answer_max_tokens if req.kind == "answer" else cfg.max_tokens
        body = {"model": self.ep.model, "messages": list(req.messages), "max_tokens": max_tokens,
                "temperature": cfg.temperature, "top_p": cfg.top_p,
                # a per-request seed makes a resumed or repeated run resample the same way
                "seed": cfg.run_seed * 1_000_003 + req.index, **self.ep.extra}
        if cfg.server_generation_config:
            body["extra_body"] = {"generation_config": json.dumps(self._server_generation_config())}
        return body

    def _server_generation_config(self) -> dict:
        gen = {}
        path = Path(self.ep.model) / "generation_config.json"
        if path.exists():  # keep the model's EOS/pad ids, or generation runs to max_tokens
            gen = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
        gen.update(do_sample=self.cfg.temperature > 0, temperature=self.cfg.temperature or 1.0,
                   top_p=self.cfg.top_p, max_new_tokens=max(self.cfg.max_tokens, self.cfg.answer_max_tokens),
                   repetition_penalty=self.cfg.repetition_penalty)
        return gen

    def worst_case_usd(self, req: Request, *, batch: bool = False) -> float:
        if not self.priced:
            return 0.0
        out_tokens = self.cfg.answer_max_tokens if req.kind == "answer" else self.cfg.max_tokens
        usd, _ = api_cost(self.price_model, prompt_token_bound(req.messages), out_tokens, batch=batch,
                          prices=getattr(self.budgets, "prices", None))
        return usd

    def reserve(self, usd: float):
        if self.guard is None or usd <= 0:
            return None
        return self.guard.reserve(usd)

    # -- progress ----------------------------------------------------------------------
    def _update_bar(self, n: int) -> None:
        if self._bar is None:
            return
        self._bar.update(n)
        self._bar.set_postfix_str(self.postfix(), refresh=True)

    def postfix(self) -> str:
        p = self.progress
        rej = " ".join(f"{k}={v}" for k, v in p.rejected.most_common())
        proj = p.projected_usd(self.cfg.num_instructions)
        proj_s = f"${proj:,.4f}" if proj is not None else "?"
        return f"req={p.requests_done} rejected[{rej}] spent=${p.usd:,.4f} projected={proj_s}"

    def _open_bar(self):
        if not self.show_progress:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=self.cfg.num_instructions, initial=len(self.records), unit="kept",
                         desc="generate", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
        self._bar.set_postfix_str(self.postfix())

    # -- main loop ---------------------------------------------------------------------
    def done(self) -> bool:
        return len(self.records) >= self.cfg.num_instructions

    def pending_indices(self):
        """Request indices not in the log yet, in order (a resumed run re-sends the gaps first)."""
        i = 0
        while True:
            if self.cfg.max_requests and i >= self.cfg.max_requests:
                return
            if self.request_id_for(i) not in self.logged_ids:
                yield i
            i += 1

    def request_id_for(self, index: int) -> str:
        from lib.generate.prompt import request_id

        return request_id(self.cfg.run_seed, index)

    def run(self) -> dict:
        self.recover()
        self._open_bar()
        try:
            if not self.done():
                if self.cfg.use_batch_api:
                    from lib.generate.batch import run_batches

                    run_batches(self)
                else:
                    run_coroutine(self._run_async())
        finally:
            if self._bar is not None:
                self._bar.close()
        if not self.progress.stop_reason:
            self.progress.stop_reason = "target reached" if self.done() else "request limit reached"
        return self.finish()

    async def _run_async(self) -> None:
        client = make_async_client(self.ep, timeout=self.cfg.request_timeout_s, max_retries=0)
        sem = asyncio.Semaphore(self.cfg.concurrency)
        tasks: set[asyncio.Task] = set()
        failure: list[BaseException] = []
        loop = asyncio.get_running_loop()
        # Replies are ingested (3 fsyncs each) by ONE worker thread, in arrival order, so disk
        # waits overlap the network waits instead of stalling the event loop.
        ingester = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        with AppendLog(self.responses_path) as log, AppendLog(self.generated_path) as out:

            async def one(req: Request, res) -> None:
                released = False
                try:
                    completion = await self._send(client, req)
                    sem.release()  # the request slot is free; ingesting is the worker's job
                    released = True
                    resp = self.response_record(req, completion)
                    _, usd = await loop.run_in_executor(ingester, self.ingest, req, resp, out, log)
                    if res is not None:
                        res.settle(usd)  # the ledger now holds the real cost
                except BaseException as e:  # noqa: BLE001 - surfaced below, after in-flight work lands
                    failure.append(e)
                finally:
                    if res is not None:
                        res.release()
                    if not released:
                        sem.release()

            indices = iter(self.pending_indices())
            answering: set[str] = set()

            deadline = time.monotonic() + self.cfg.time_limit_s if self.cfg.time_limit_s else None

            def next_request() -> Request | None:
                if deadline is not None and time.monotonic() > deadline:
                    self.progress.stop_reason = self.progress.stop_reason or "time limit reached"
                    return None
                # Answers for tasks already kept come first; new lists only while short of the target.
                for rid in list(self.pending_answers):
                    if rid not in answering and rid + ANSWER_SUFFIX not in self.logged_ids:
                        answering.add(rid)
                        return self.answer_request(rid)
                if len(self.records) + len(self.pending_answers) >= self.cfg.num_instructions:
                    return None
                index = next(indices, None)
                return None if index is None else self.request(index)

            try:
                while True:
                    await sem.acquire()
                    req = None if failure else next_request()
                    if req is None:
                        sem.release()
                        if tasks and not failure:  # in-flight replies may bring answers to send
                            await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
                            continue
                        break
                    res = None
                    while True:
                        try:
                            res = self.reserve(self.worst_case_usd(req))
                            break
                        except BudgetExceeded as e:
                            if tasks:  # in-flight worst cases may settle for less: wait, then re-check
                                await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
                                continue
                            self.progress.stop_reason = f"budget cap: {e}"
                            print(f"stopping before the cap: {e}", file=sys.stderr)
                            break
                    if self.progress.stop_reason.startswith("budget cap"):
                        sem.release()
                        break
                    t = asyncio.create_task(one(req, res))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                ingester.shutdown(wait=True)
                await client.close()
        if failure:
            raise failure[0]

    async def _send(self, client, req: Request):
        cfg = self.cfg
        attempt = 0
        while True:
            try:
                # The raw JSON is all we keep; skipping the SDK's pydantic models saves CPU per
                # reply, which is what caps throughput at high concurrency. Errors still raise
                # the SDK's typed exceptions (RateLimitError, ...), with headers.
                raw = await client.chat.completions.with_raw_response.create(**self.request_body(req))
                return json.loads(raw.content)
            except openai.AuthenticationError:
                raise UserError(f"{self.ep.base_url} refused the key in {self.ep.api_key_env}: export a valid key") from None
            except (openai.APIError, json.JSONDecodeError) as e:
                # A cut or garbled body (a proxy dropping bytes) is retried like a 5xx: the
                # server billed nothing we could record, and the same request may succeed.
                reason = "malformed" if isinstance(e, json.JSONDecodeError) else retry_reason(e)
                if reason is None:
                    raise UserError(f"the teacher rejected request {req.id}: {e}; fix the model name or max_tokens") from None
                self.progress.retries[reason] += 1
                attempt += 1
                if attempt > cfg.max_retries:
                    raise UserError(
                        f"the teacher at {self.ep.base_url} failed {attempt} times ({reason}) on request {req.id}: "
                        "check the server, then re-run to resume (finished work is kept)") from None
                wait = retry_after_s(e) if isinstance(e, openai.APIError) else None
                if wait is None:
                    wait = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                await asyncio.sleep(wait)

    # -- end of run --------------------------------------------------------------------
    def finish(self) -> dict:
        tmp = self.rejected_path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in self.rejected:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.replace(self.rejected_path)
        p = self.progress
        kept = len(self.records)
        summary = {
            "kept": kept, "target": self.cfg.num_instructions, "requests": p.requests_done,
            "answered": sum(1 for r in self.records if r["source"].endswith("+answer")),
            "pending_answers": len(self.pending_answers),
            "rejected": dict(p.rejected), "retries": dict(p.retries), "stop_reason": p.stop_reason,
            "usd": p.usd, "usd_reference": p.usd_reference,
            "usd_per_1k_kept": (p.usd / kept * 1000) if kept else None,
            "usd_reference_per_1k_kept": (p.usd_reference / kept * 1000) if kept else None,
            "prompt_tokens": p.prompt_tokens, "completion_tokens": p.completion_tokens,
            "price_model": self.price_model if self.priced else None,
            "endpoint": {k: v for k, v in self.ep.public().items() if k != "extra"},
            "config": asdict(self.cfg),
        }
        write_json_atomic(self.summary_path, summary)
        return summary


def run_coroutine(coro):
    """asyncio.run that also works inside Jupyter, whose kernel already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
