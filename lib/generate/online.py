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
    await _Loop(gen).run()


class _Loop:
    """One online run: requests go out while a slot of `concurrency` is free and the budget
    holds their worst case; replies come back in any order and are ingested in arrival order."""

    def __init__(self, gen: Host):
        cfg = self.cfg = gen.cfg
        self.gen = gen
        self.client = make_async_client(gen.ep, timeout=cfg.request_timeout_s, max_retries=0)
        self.sem = asyncio.Semaphore(cfg.concurrency)
        self.tasks: set[asyncio.Task] = set()
        self.failure: list[BaseException] = []
        # Replies are ingested (3 fsyncs each) by ONE worker thread, in arrival order, so disk
        # waits overlap the network waits instead of stalling the event loop.
        self.ingester = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        self.indices = iter(gen.pending_indices())
        self.asked: set[str] = set()
        self.deadline = time.monotonic() + cfg.time_limit_s if cfg.time_limit_s else None

    async def run(self) -> None:
        try:
            while True:
                await self.sem.acquire()
                req = None if self.failure else self.next_request()
                if req is None:
                    self.sem.release()
                    if self.tasks and not self.failure:  # in-flight replies may bring answers to send
                        await self.wait_for_one()
                        continue
                    break
                res = await self.hold(req)
                if res is None:  # over the cap with nothing in flight: stopped
                    self.sem.release()
                    break
                t = asyncio.create_task(self.one(req, res))
                self.tasks.add(t)
                t.add_done_callback(self.tasks.discard)
            if self.tasks:
                await asyncio.gather(*self.tasks)
        finally:
            for t in self.tasks:
                t.cancel()
            self.ingester.shutdown(wait=True)
            await self.client.close()
        if self.failure:
            raise self.failure[0]

    async def wait_for_one(self) -> None:
        await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)

    def next_request(self) -> Request | None:
        gen = self.gen
        if self.deadline is not None and time.monotonic() > self.deadline:
            gen.stop("time limit reached")
            return None
        for rid, req in gen.answers_due(self.asked):
            self.asked.add(rid)
            return req
        if not gen.short_of_target():
            return None
        index = next(self.indices, None)
        return None if index is None else gen.request(index)

    async def hold(self, req: Request):
        """The budget's reservation for `req`'s worst case, or None once the cap stops the run."""
        while True:
            try:
                return self.gen.hold([req])
            except BudgetExceeded as e:
                if self.tasks:  # in-flight worst cases may settle for less: wait, then re-check
                    await self.wait_for_one()
                    continue
                self.gen.stop(f"budget cap: {e}")
                return None

    async def one(self, req: Request, res) -> None:
        released = False
        try:
            completion = await send(self.client, self.cfg, self.gen.ep, req, self.gen.retries)
            self.sem.release()  # the request slot is free; ingesting is the worker's job
            released = True
            loop = asyncio.get_running_loop()
            usd = await loop.run_in_executor(self.ingester, self.gen.ingest, req, completion)
            res.settle(usd)  # the ledger now holds the real cost
        except BaseException as e:  # noqa: BLE001 - surfaced in run(), after in-flight work lands
            self.failure.append(e)
        finally:
            res.release()
            if not released:
                self.sem.release()


def run_coroutine(coro):
    """asyncio.run that also works inside Jupyter, whose kernel already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
