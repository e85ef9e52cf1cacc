"""Rendering many editions on every core.

mjml-python and premailer hold the GIL, so threads do not help; forked processes do.
Each worker renders whole editions with the same code and the same Plan, so the bytes
are those of a serial build. Small builds, one-core machines, platforms without fork
and processes that already run threads (the preview server) render serially. If a
worker fails for any reason, its weeks are rendered again here, serially, so an error
is raised exactly as a serial build raises it.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, timedelta
from typing import TYPE_CHECKING, Callable, Iterator

from digest.forked import cores

if TYPE_CHECKING:
    from digest.build import BuiltEdition, Plan
    from digest.render import Renderer

#: Below this many editions to render, starting processes costs more than it saves.
MIN_PARALLEL = 6
#: Editions per task handed to a worker (about): one, so that the last task leaves
#: the other core idle for one edition at most (chunks of 4 cost ~5% on a cold archive).
CHUNK = 1

#: What forked workers inherit: plans, weeks, renderer, profile and the finishing step.
_JOB: tuple[list[Plan], list[str], Renderer, str | None, Callable[[str, BuiltEdition], BuiltEdition] | None] | None = None


def week_plans(p: Plan, weeks: list[str]) -> list[Plan]:
    """For each week, P with only the events its edition can show, in P's order.

    make_edition looks at every event; over a year of weeks that is weeks x events
    work. An edition shows events touching its week, deadlines in it, events in the
    "further ahead" window, and undated items (ongoing, tba): this index finds those
    in one pass, so the editions (and their cache keys) are exactly the same.
    """
    from digest.editions import week_bounds

    config = p.config
    zone = config.zone
    start = config.week_start_index

    def number(day: date) -> int:  # consecutive weeks have consecutive numbers
        return (day.toordinal() - 1 - start) // 7

    # Raises for a label that names no week, as make_edition would.
    numbers = [number(week_bounds(week, config)[0]) for week in weeks]
    lookback = timedelta(days=7 * (config.ahead_weeks + 1))
    undated: list[int] = []
    by_week: dict[int, set[int]] = {}
    few = len(set(numbers)) <= 2  # a weekly build: each event's span is checked against its weeks
    for index, event in enumerate(p.events):
        first, last = event.first_day(zone), event.last_day(zone)
        if first is None or last is None:
            undated.append(index)
            continue
        low, high = number(first - lookback), number(max(first, last))
        if few:
            for week in numbers:
                if low <= week <= high:
                    by_week.setdefault(week, set()).add(index)
        else:
            for week in range(low, high + 1):
                by_week.setdefault(week, set()).add(index)
        if event.register_by:
            by_week.setdefault(number(event.register_by), set()).add(index)
    return [replace(p, events=tuple(p.events[i] for i in sorted(by_week.get(week, set()).union(undated))))
            for week in numbers]


@contextmanager
def frozen() -> Iterator[None]:
    """Around forking workers: every object this process holds is left out of the
    collector's passes (gc.freeze, as the gc documentation advises before fork), so a
    worker's collections neither walk nor copy the parent's plan, events and templates:
    about an eighth of a cold archive's CPU. Afterwards they are collectable again."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def workers_for(count: int, jobs: int | None = None) -> int:
    """How many processes to use for COUNT editions (1 means serial)."""
    if jobs is not None:
        return max(1, min(jobs, count))
    if count < MIN_PARALLEL:
        return 1
    return max(1, min(cores(), count // 3))


def _render_chunk(weeks: list[str]) -> list[BuiltEdition]:
    from digest.build import render_edition

    assert _JOB is not None
    plans, labels, renderer, profile, finish = _JOB
    items = []
    for week in weeks:
        item = render_edition(plans[labels.index(week)], week, renderer, profile=profile)
        items.append(finish(week, item) if finish else item)
    return items


def render_weeks(plans: list[Plan], weeks: list[str], renderer: Renderer, *, profile: str | None = None,
                 jobs: int | None = None, progress: Callable[[int], None] | None = None,
                 finish: Callable[[str, BuiltEdition], BuiltEdition] | None = None,
                 done: Callable[[str, BuiltEdition], BuiltEdition] | None = None) -> list[BuiltEdition]:
    """Render WEEKS (in order; PLANS[i] for WEEKS[i]) serially or in forked processes; same bytes either way.

    PROGRESS, when given, is called with the number of editions finished since its last call.
    FINISH, when given, runs where each edition was rendered (in its worker) and returns
    what to send back: a build writes the files there and sends back no bytes. DONE runs
    here, as each edition arrives (in any order), and returns what to keep of it."""
    from digest.build import render_edition

    finished: dict[str, BuiltEdition] = {}

    def arrive(week: str, item: BuiltEdition) -> None:
        finished[week] = done(week, item) if done else item

    def serial(week: str) -> BuiltEdition:
        item = render_edition(plans[weeks.index(week)], week, renderer, profile=profile)
        arrive(week, finish(week, item) if finish else item)
        if progress:
            progress(1)
        return finished[week]

    count = workers_for(len(weeks), jobs)
    if count == 1 or threading.active_count() > 1:
        return [serial(week) for week in weeks]
    # Imported only here: a one-edition build (the weekly job) does without them (~6 ms).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    if "fork" not in multiprocessing.get_all_start_methods():
        return [serial(week) for week in weeks]
    global _JOB
    # Templates compiled, premailer imported and zone TZIDs looked up once, here: every
    # worker inherits them.
    renderer.warm()
    from digest.ical import learn_tzids

    learn_tzids(event for q in plans for event in q.events)
    _JOB = (plans, weeks, renderer, profile, finish)
    # Small interleaved chunks (0, n, 2n, … / 1, n+1, …): busy and quiet stretches of the
    # year balance out, and neither a worker nor the queue holds more than a few editions.
    slices = max(count * 2, len(weeks) // CHUNK)
    chunks = [weeks[i::slices] for i in range(slices)]
    try:
        with frozen(), ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {}
            try:
                for chunk in chunks:
                    if chunk:
                        futures[pool.submit(_render_chunk, chunk)] = chunk
            except OSError:  # cannot fork (no memory, process limit): the rest is rendered below
                pass
            # Errors of this process's own steps (DONE, PROGRESS) are not caught here.
            for future in as_completed(futures):
                chunk = futures.pop(future)  # dropped with its result once handed on
                try:
                    items = future.result()
                except Exception:  # re-rendered below, where the error surfaces as in a serial build
                    continue
                for week, item in zip(chunk, items):
                    arrive(week, item)
                if progress:
                    progress(len(items))
    finally:
        _JOB = None
    return [finished[week] if week in finished else serial(week) for week in weeks]
