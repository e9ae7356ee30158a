"""The online request loop: up to `concurrency` requests in flight, each reserved first.

For every request: take a slot, pick the next request (answers to kept tasks first, then new
lists while short of the target), reserve its worst case against the cap (if it does not
fit while others are in flight, wait for one to settle and check again; if nothing is in
flight, stop), send it with retries (sending.py), and hand the reply to ONE ingest thread
in arrival order (the Generator logs, meters and harvests it; journal.py). The first
failure stops new requests; the ones in flight still land before it is raised.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Protocol

from lib.core.client import Endpoint, make_async_client
from lib.core.errors import BudgetExceeded
from lib.generate.config import GenerateConfig
from lib.generate.prompt import Request
from lib.generate.sending import send


class Host(Protocol):
    """What the loop needs from the Generator (engine.py), and nothing else."""

    cfg: GenerateConfig
    ep: Endpoint
    retries: dict

    def pending_indices(self) -> Iterator[int]: ...
    def request(self, index: int) -> Request: ...
    def answers_due(self, asked: set[str]) -> Iterator[tuple[str, Request]]: ...
    def short_of_target(self) -> bool: ...
    def hold(self, reqs: list[Request]): ...
    def ingest(self, req: Request, completion) -> float: ...
    def stop(self, reason: str) -> None: ...


def run_online(gen: Host) -> None:
    run_coroutine(_loop(gen))


async def _loop(gen: Host) -> None:
    cfg = gen.cfg
    client = make_async_client(gen.ep, timeout=cfg.request_timeout_s, max_retries=0)
    sem = asyncio.Semaphore(cfg.concurrency)
    tasks: set[asyncio.Task] = set()
    failure: list[BaseException] = []
    loop = asyncio.get_running_loop()
    # Replies are ingested (3 fsyncs each) by ONE worker thread, in arrival order, so disk
    # waits overlap the network waits instead of stalling the event loop.
    ingester = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")

    async def one(req: Request, res) -> None:
        released = False
        try:
            completion = await send(client, cfg, gen.ep, req, gen.retries)
            sem.release()  # the request slot is free; ingesting is the worker's job
            released = True
            usd = await loop.run_in_executor(ingester, gen.ingest, req, completion)
            res.settle(usd)  # the ledger now holds the real cost
        except BaseException as e:  # noqa: BLE001 - surfaced below, after in-flight work lands
            failure.append(e)
        finally:
            res.release()
            if not released:
                sem.release()

    indices = iter(gen.pending_indices())
    asked: set[str] = set()
    deadline = time.monotonic() + cfg.time_limit_s if cfg.time_limit_s else None

    def next_request() -> Request | None:
        if deadline is not None and time.monotonic() > deadline:
            gen.stop("time limit reached")
            return None
        for rid, req in gen.answers_due(asked):
            asked.add(rid)
            return req
        if not gen.short_of_target():
            return None
        index = next(indices, None)
        return None if index is None else gen.request(index)

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
            over_cap = False
            while True:
                try:
                    res = gen.hold([req])
                    break
                except BudgetExceeded as e:
                    if tasks:  # in-flight worst cases may settle for less: wait, then re-check
                        await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
                        continue
                    gen.stop(f"budget cap: {e}")
                    over_cap = True
                    break
            if over_cap:
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


def run_coroutine(coro):
    """asyncio.run that also works inside Jupyter, whose kernel already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
