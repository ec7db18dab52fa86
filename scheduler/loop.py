"""Turn time into work: claim each due slot in Postgres; only the winner enqueues.

`INSERT … ON CONFLICT DO NOTHING RETURNING` makes any number of schedulers safe: one
row per (job, slot), one winner. Claim and enqueue are two steps; a claim whose send
was never recorded (a crash, the broker down) is sent again by `sweep`, and the
worker skips a run that already started (`workers/scheduled_runs.py`), so a slot runs
once. Each scheduler keeps, per job, the last slot it handled: a clock that jumps back
finds nothing due, and a restart resumes from the last slot claimed in Postgres.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import Counter

from scheduler.jobs import ScheduledJob
from scheduler.slots import next_slot, slots_between
from workers.logs import get_logger

log = get_logger(__name__)

FIRED = Counter("bindery_scheduler_slots_fired_total", "Slots this scheduler claimed and sent.", ["job"])
SKIPPED = Counter(
    "bindery_scheduler_slots_skipped_total", "Missed slots a 'latest' job did not fire.", ["job"]
)
RESENT = Counter("bindery_scheduler_sweeper_resends_total", "Claimed slots sent again by the sweeper.")


@dataclass(frozen=True)
class Fire:
    job: ScheduledJob
    slot: datetime


Send = Callable[[list[Fire]], Awaitable[None]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Cursor:
    last: datetime  # the last slot handled (claimed here or elsewhere)
    due: datetime  # the next slot after `last`


class Scheduler:
    """Claims and sends due slots for `jobs`.

    Parameters:
      pool: the database.
      jobs: the effective schedule (disabled jobs are ignored).
      send: enqueues the fired slots' messages.
      clock: the current UTC time (tests inject their own).
      sweep_after: how long a claim may stay unsent before the sweeper sends it.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        jobs: list[ScheduledJob],
        send: Send,
        *,
        clock: Clock = utc_now,
        sweep_after: timedelta = timedelta(seconds=30),
    ) -> None:
        self.pool = pool
        self.jobs = {job.name: job for job in jobs if job.enabled}
        self.send = send
        self.clock = clock
        self.sweep_after = sweep_after
        self.cursors: dict[str, _Cursor] = {}

    async def start(self) -> None:
        """Resume each job from its last claimed cron slot; a job never run starts now."""
        rows = await self.pool.fetch(
            "SELECT job, max(slot) AS last FROM schedule_runs WHERE trigger = 'cron' GROUP BY job"
        )
        last_claimed = {row["job"]: row["last"] for row in rows}
        now = self.clock()
        for name, job in self.jobs.items():
            last = last_claimed.get(name, now)
            self.cursors[name] = _Cursor(last, next_slot(job.cron, job.zone, last))

    def due(self, now: datetime) -> list[Fire]:
        """The slots to fire at `now`, per job policy; advances the cursors."""
        fires: list[Fire] = []
        # Jobs sharing a schedule share its arithmetic (a croniter call is not cheap).
        computed: dict[tuple[str, str, datetime], tuple[list[datetime], datetime]] = {}
        for name, cursor in self.cursors.items():
            if cursor.due > now:
                continue  # includes a clock that went backwards
            job = self.jobs[name]
            after = max(cursor.last, now - job.catchup_window)
            key = (job.cron, job.timezone, after)
            if key not in computed:
                computed[key] = slots_between(job.cron, job.zone, after, now)
            slots, following = computed[key]
            if job.catchup == "latest" and len(slots) > 1:
                SKIPPED.labels(job=name).inc(len(slots) - 1)
                log.warning("skipping missed slots", job=name, skipped=len(slots) - 1, policy="latest")
                slots = slots[-1:]
            fires.extend(Fire(job, slot) for slot in slots)
            cursor.last, cursor.due = now, following
        return fires

    async def tick(self) -> list[Fire]:
        """Claim what is due now and send what this scheduler won."""
        fires = self.due(self.clock())
        if not fires:
            return []
        won = await claim(self.pool, fires)
        if won:
            await self.send(won)
            await mark_sent(self.pool, won)
            for fire in won:
                FIRED.labels(job=fire.job.name).inc()
        return won

    async def sweep(self) -> int:
        """Send again the claims whose send was never recorded."""
        rows = await self.pool.fetch(
            """
            UPDATE schedule_runs SET claimed_at = now()
             WHERE (job, slot) IN (SELECT job, slot FROM schedule_runs
                                    WHERE enqueued_at IS NULL AND claimed_at < now() - $1::interval
                                    ORDER BY claimed_at LIMIT 1000
                                    FOR UPDATE SKIP LOCKED)
            RETURNING job, slot
            """,
            self.sweep_after,
        )
        fires = [Fire(self.jobs[row["job"]], row["slot"]) for row in rows if row["job"] in self.jobs]
        if fires:
            await self.send(fires)
            await mark_sent(self.pool, fires)
            RESENT.inc(len(fires))
            log.info("sweeper re-sent claimed slots", count=len(fires))
        return len(fires)

    def seconds_to_next(self) -> float:
        if not self.cursors:
            return 1.0
        soonest = min(cursor.due for cursor in self.cursors.values())
        return max(0.0, (soonest - self.clock()).total_seconds())

    async def run_forever(self, max_sleep: float = 1.0) -> None:
        await self.start()
        last_sweep = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.tick()
                if loop.time() - last_sweep >= min(self.sweep_after.total_seconds() / 3, 10):
                    await self.sweep()
                    last_sweep = loop.time()
            except Exception as error:
                # Postgres or the broker is away: try again shortly. A claim that was not
                # sent stays unsent in Postgres and the sweeper sends it.
                log.warning("scheduler tick failed", error=type(error).__name__)
                await asyncio.sleep(1)
            # Wake for the next slot (a few ms late rather than early), at least every second.
            await asyncio.sleep(min(max_sleep, self.seconds_to_next() + 0.002))


async def claim(
    pool: asyncpg.Pool | asyncpg.Connection, fires: list[Fire], trigger: str = "cron"
) -> list[Fire]:
    """Insert one row per fire; return those this call inserted (the others were won elsewhere)."""
    rows = await pool.fetch(
        """
        INSERT INTO schedule_runs (job, slot, trigger)
        SELECT job, slot, $3 FROM unnest($1::text[], $2::timestamptz[]) AS fired(job, slot)
        ON CONFLICT DO NOTHING
        RETURNING job, slot
        """,
        [fire.job.name for fire in fires],
        [fire.slot for fire in fires],
        trigger,
    )
    won = {(row["job"], row["slot"]) for row in rows}
    return [fire for fire in fires if (fire.job.name, fire.slot) in won]


async def mark_sent(pool: asyncpg.Pool | asyncpg.Connection, fires: list[Fire]) -> None:
    await pool.execute(
        """
        UPDATE schedule_runs SET enqueued_at = now()
          FROM unnest($1::text[], $2::timestamptz[]) AS sent(job, slot)
         WHERE schedule_runs.job = sent.job AND schedule_runs.slot = sent.slot
        """,
        [fire.job.name for fire in fires],
        [fire.slot for fire in fires],
    )
