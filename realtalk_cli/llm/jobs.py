"""A run's many requests through one client: `run_all` sends them within the client's concurrency limit and
hands each completion to a callback as it finishes; `run_jobs` drives it from synchronous code and closes the
clients after; `dry_run_plan` counts, offline, what a run would send and cost.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterable

from realtalk_cli.llm.client import Completion, LLMClient, NotSent
from realtalk_cli.llm.providers import Endpoint, Prices
from realtalk_cli.llm.tokens import count_message_tokens


def dry_run_plan(
    endpoint: Endpoint,
    prices: Prices,
    requests: Iterable[list[dict]],
    already_done: int,
    unit: str,
    max_tokens: int,
    cached_tokens: list[int] | None = None,
    batch: bool = False,
) -> dict:
    """What a run would send, counted offline; the cost assumes every reply uses all of `max_tokens`.

    `cached_tokens` estimates, per request, the prompt tokens the provider's prompt cache would serve. `requests`
    may be a generator: each request is counted and let go (a LongMemEval run's prompts total hundreds of MB).
    """
    tokens, count, exact = 0, 0, True
    for messages in requests:
        n, ok = count_message_tokens(messages, endpoint.model)
        tokens, count, exact = tokens + n, count + 1, exact and ok
    cached = sum(cached_tokens or [])
    cost = prices.cost(endpoint.model, tokens, max_tokens * count, cached, batch=batch)
    return {
        "requests": count,
        "already_done": already_done,
        "prompt_tokens": tokens,
        "cached_tokens_estimate": cached,
        "tokens_exact": exact,
        f"prompt_tokens_per_{unit}": round(tokens / count, 1) if count else 0,
        "estimated_cost_usd": cost,  # exact: rounded once, where it is shown
        "estimated_cost_uncached_usd": prices.cost(endpoint.model, tokens, max_tokens * count, batch=batch),
        "batch": batch,
        "priced": endpoint.offline or prices.known(endpoint.model),  # an offline model costs nothing
        "model": endpoint.label,
    }


class StopRun(Exception):
    """Raised by an on_done callback to end a run cleanly (e.g. the cost limit is reached): nothing more is sent,
    and the requests already in flight finish and reach on_done (their replies are billed: they are recorded)."""


Messages = list[dict] | Callable[[], list[dict]]  # a callable builds the prompt only when its turn comes


def run_jobs(
    client: LLMClient,
    jobs: Iterable[tuple[object, Messages]],
    on_done: Callable[[object, Completion], Awaitable[None] | None],
    max_tokens: int | None = 256,
    also_close: Iterable[LLMClient | None] = (),
    group_of: Callable[[object], object] | None = None,
    accept_of: Callable[[object], Callable[[str], bool]] | None = None,
    **params,
) -> bool:
    """Run `run_all` to the end from synchronous code, then close the clients and their caches.

    Returns True when on_done stopped the run early with StopRun. `params` go to every `complete` call;
    `accept_of(tag)`, when given, is the reply check of that job's call.
    """
    clients = [client, *(c for c in also_close if c is not None)]

    async def main() -> bool:
        try:
            await run_all(
                client, jobs, on_done, max_tokens=max_tokens, group_of=group_of, accept_of=accept_of, **params
            )
            return False
        except StopRun:
            return True
        finally:
            for c in clients:
                await c.aclose()

    # Objects alive before the run (imported modules, chats) are never garbage: keep the collector's full
    # passes, which would stall every request in flight, to what the run itself allocates.
    gc.freeze()
    try:
        return asyncio.run(main())
    finally:
        gc.unfreeze()
        for cache in {id(c.cache): c.cache for c in clients if c.cache is not None}.values():
            cache.close()


async def run_all(
    client: LLMClient,
    jobs: Iterable[tuple[object, Messages]],
    on_done: Callable[[object, Completion], Awaitable[None] | None],
    max_tokens: int | None = 256,
    group_of: Callable[[object], object] | None = None,
    accept_of: Callable[[object], Callable[[str], bool]] | None = None,
    **params,
) -> None:
    """Send every (tag, messages) job within the client's concurrency limit; call on_done as each finishes.

    Jobs are started a few at a time (four times the limit are alive at once), so memory does not grow with
    their number and an interrupted run loses only those. With `group_of`, jobs of one group share a long
    prompt prefix: the first of each group is sent alone and the rest once it has answered, so that the
    provider's prompt cache holds the prefix. A StopRun from on_done halts the client: nothing more is sent, and
    the requests in flight are waited for and handed to on_done before StopRun is raised again.
    """
    jobs = list(jobs)
    window = asyncio.Semaphore(4 * client.limiter.limit)
    groups = [group_of(tag) for tag, _ in jobs] if group_of is not None else [None] * len(jobs)
    first_of: dict[object, int] = {}
    for i, group in enumerate(groups):
        if group is not None:
            first_of.setdefault(group, i)
    firsts = set(first_of.values())
    order = sorted(firsts) + [i for i in range(len(jobs)) if i not in firsts]
    opened = {group: asyncio.Event() for group in first_of}

    async def one(i: int) -> None:
        tag, messages = jobs[i]
        group = groups[i]
        try:
            if group is not None and i not in firsts:
                await opened[group].wait()
            if callable(messages):
                messages = messages()
            try:
                check = {"accept": accept_of(tag)} if accept_of is not None else {}
                completion = await client.complete(messages, max_tokens=max_tokens, **params, **check)
            finally:
                if i in firsts:
                    opened[group].set()
            result = on_done(tag, completion)
            if asyncio.iscoroutine(result):
                await result
        finally:
            window.release()

    running: set[asyncio.Task] = set()
    try:
        for i in order:
            await window.acquire()
            for task in [t for t in running if t.done()]:
                running.discard(task)
                task.result()  # an exception (StopRun) ends the run here
            running.add(asyncio.ensure_future(one(i)))
        while running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
            # every finished task's exception is taken (asyncio prints the ones left), the first is raised
            errors = [task.exception() for task in done if not task.cancelled()]
            for error in errors:
                if error is not None:
                    raise error
    except (StopRun, NotSent):  # NotSent: a request found the client halted before StopRun reached here
        client.halt()
        while running:  # the replies in flight are billed: wait for them and record them
            done, running = await asyncio.wait(running)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None and not isinstance(error, (StopRun, NotSent)):
                    raise error from None
        raise StopRun() from None
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
