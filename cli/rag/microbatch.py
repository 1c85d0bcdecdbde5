"""Batch concurrent requests together for one model call (``rag serve``).

Requests queue their texts; one worker takes the first, waits up to
``max_wait`` seconds for more (or until ``max_batch`` texts), runs the model
once in a thread and hands each request its rows. While the model runs, the
next batch gathers, so a concurrent client keeps the model busy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from rag import threads
from rag.providers.base import Vectors

Encode = Callable[[list[str]], tuple[Vectors, list[int]]]


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[tuple[Vectors, list[int]]]


class MicroBatcher:
    """Start it inside the event loop that will call :meth:`encode`. ``batches``/``requests`` count the work done."""

    def __init__(self, encode: Encode, *, max_batch: int = 256, max_wait: float = 0.005) -> None:
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.batches = 0
        self.requests = 0
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = threads.pool(1, "rag-model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def encode(self, texts: list[str]) -> tuple[Vectors, list[int]]:
        """Vectors and per-text token counts for ``texts``, computed alongside other requests."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        future: asyncio.Future[tuple[Vectors, list[int]]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(list(texts), future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather(self._queue)
            texts = [t for job in jobs for t in job.texts]
            self.batches += 1
            self.requests += len(jobs)
            try:
                vectors, counts = await loop.run_in_executor(self._executor, self._encode, texts)
            except Exception as exc:  # the model failing must fail the requests, not the worker
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            start = 0
            for job in jobs:
                end = start + len(job.texts)
                if not job.future.done():  # the client may have gone away
                    job.future.set_result((vectors[start:end], counts[start:end]))
                start = end

    async def _gather(self, queue: asyncio.Queue[_Job]) -> list[_Job]:
        jobs = [await queue.get()]
        size = len(jobs[0].texts)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(queue.get(), left)
                except asyncio.TimeoutError:
                    break
            jobs.append(job)
            size += len(job.texts)
        return jobs
