"""The scheduler with an injected clock: DST, catch-up, clock jumps, concurrent claims."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import redis

from scheduler.jobs import ScheduledJob, ScheduleError, declared_schedule, effective_schedule
from scheduler.loop import Fire, Scheduler
from scheduler.slots import slots_between
from tasks.system import prune_records
from tests.processes import bindery_env, run_bindery
from workers.scheduled_runs import start_run

PARIS = ZoneInfo("Europe/Paris")
_names = itertools.count()


def unique(name: str) -> str:
    """Job names are rows in schedule_runs: each test gets its own."""
    return f"{name}-{next(_names)}-{secrets.token_hex(3)}"


class Recorder:
    def __init__(self) -> None:
        self.fired: list[Fire] = []

    async def __call__(self, fires: list[Fire]) -> None:
        self.fired.extend(fires)

    def slots(self, job: ScheduledJob) -> list[datetime]:
        return [fire.slot for fire in self.fired if fire.job.name == job.name]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def drive(scheduler: Scheduler, clock: Clock, until: datetime, step: timedelta) -> None:
    """Tick the scheduler at every `step` of simulated time up to `until`."""
    while clock.now < until:
        clock.now = min(clock.now + step, until)
        await scheduler.tick()


@pytest.mark.parametrize(
    ("day", "utc_expected"),
    [
        # 29 March: 02:00–03:00 does not exist; both jobs run once, just after the gap.
        (datetime(2026, 3, 29), {"0 2 * * *": "01:00", "30 2 * * *": "01:30"}),
        # 25 October: 02:00–03:00 happens twice; both jobs run once, at the first one (CEST).
        (datetime(2026, 10, 25), {"0 2 * * *": "00:00", "30 2 * * *": "00:30"}),
    ],
    ids=["spring-forward", "fall-back"],
)
async def test_paris_nightly_jobs_run_exactly_once_on_dst_days(
    pool: asyncpg.Pool, day: datetime, utc_expected: dict[str, str]
) -> None:
    jobs = [
        ScheduledJob(unique(f"dst-{cron}"), cron, actor="x", timezone="Europe/Paris") for cron in utc_expected
    ]
    clock = Clock(day.replace(tzinfo=UTC) - timedelta(hours=6))
    recorder = Recorder()
    scheduler = Scheduler(pool, jobs, recorder, clock=clock)
    await scheduler.start()
    await drive(scheduler, clock, day.replace(tzinfo=UTC) + timedelta(hours=12), timedelta(minutes=7))
    for job in jobs:
        slots = recorder.slots(job)
        assert len(slots) == 1, (job.cron, slots)
        assert slots[0].strftime("%H:%M") == utc_expected[job.cron]
        assert slots[0].date() == day.date()


def test_slots_are_utc_and_follow_the_local_wall_clock() -> None:
    after = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    slots, following = slots_between("0 2 * * *", PARIS, after, after + timedelta(days=3))
    assert following == datetime(2026, 7, 5, 0, 0, tzinfo=UTC)
    assert [slot.hour for slot in slots] == [0, 0, 0]  # 02:00 CEST = 00:00 UTC
    assert all(slot.tzinfo == UTC for slot in slots)


async def test_after_three_hours_down_latest_fires_once_and_all_fires_each_slot_in_its_window(
    pool: asyncpg.Pool,
) -> None:
    down_at = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    hourly = ScheduledJob(unique("latest"), "0 * * * *", actor="x", catchup="latest")
    quarterly = ScheduledJob(
        unique("all"), "*/15 * * * *", actor="x", catchup="all", catchup_window=timedelta(hours=2)
    )
    for job in (hourly, quarterly):
        await pool.execute(
            "INSERT INTO schedule_runs (job, slot, enqueued_at) VALUES ($1, $2, $2)", job.name, down_at
        )
    clock = Clock(down_at + timedelta(hours=3, minutes=5))  # 12:05, after three hours with no scheduler
    recorder = Recorder()
    scheduler = Scheduler(pool, [hourly, quarterly], recorder, clock=clock)
    await scheduler.start()
    await scheduler.tick()
    assert recorder.slots(hourly) == [datetime(2026, 5, 4, 12, 0, tzinfo=UTC)]
    expected = [datetime(2026, 5, 4, 10, 15, tzinfo=UTC) + timedelta(minutes=15 * i) for i in range(8)]
    assert recorder.slots(quarterly) == expected  # 10:15 … 12:00, oldest first; nothing before 10:05
    await scheduler.tick()
    assert len(recorder.fired) == 9  # catching up happens once


async def test_a_clock_jumping_backwards_does_not_refire_a_slot(pool: asyncpg.Pool) -> None:
    job = ScheduledJob(unique("backwards"), "* * * * *", actor="x")
    clock = Clock(datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC))
    recorder = Recorder()
    scheduler = Scheduler(pool, [job], recorder, clock=clock)
    await scheduler.start()
    await drive(scheduler, clock, datetime(2026, 6, 1, 12, 5, 30, tzinfo=UTC), timedelta(seconds=10))
    assert len(recorder.slots(job)) == 5
    clock.now = datetime(2026, 6, 1, 12, 1, 30, tzinfo=UTC)  # NTP steps the clock back 4 minutes
    await drive(scheduler, clock, datetime(2026, 6, 1, 12, 5, 30, tzinfo=UTC), timedelta(seconds=10))
    assert len(recorder.slots(job)) == 5
    # A scheduler started during the jump resumes from Postgres, not from its clock.
    fresh_clock = Clock(datetime(2026, 6, 1, 12, 2, 30, tzinfo=UTC))
    fresh = Scheduler(pool, [job], recorder, clock=fresh_clock)
    await fresh.start()
    await drive(fresh, fresh_clock, datetime(2026, 6, 1, 12, 6, 30, tzinfo=UTC), timedelta(seconds=10))
    assert recorder.slots(job)[-1] == datetime(2026, 6, 1, 12, 6, tzinfo=UTC)
    assert len(recorder.slots(job)) == len(set(recorder.slots(job))) == 6


async def test_concurrent_schedulers_fire_each_slot_once(pool: asyncpg.Pool) -> None:
    job = ScheduledJob(unique("race"), "* * * * * *", actor="x", catchup="all")
    start = datetime(2026, 6, 2, 8, 0, tzinfo=UTC)
    recorder = Recorder()
    clock = Clock(start)
    schedulers = [Scheduler(pool, [job], recorder, clock=clock) for _ in range(5)]
    for scheduler in schedulers:
        await scheduler.start()
    for _ in range(20):
        clock.now += timedelta(seconds=1)
        await asyncio.gather(*(scheduler.tick() for scheduler in schedulers))
    slots = recorder.slots(job)
    assert sorted(slots) == [start + timedelta(seconds=i) for i in range(1, 21)]


async def test_a_claim_whose_send_was_lost_is_sent_by_the_sweeper(pool: asyncpg.Pool) -> None:
    job = ScheduledJob(unique("lost-send"), "* * * * *", actor="x")
    await pool.execute(
        "INSERT INTO schedule_runs (job, slot, claimed_at) VALUES ($1, now(), now() - interval '5 minutes')",
        job.name,
    )
    recorder = Recorder()
    scheduler = Scheduler(pool, [job], recorder)
    assert await scheduler.sweep() == 1
    assert recorder.slots(job) and await scheduler.sweep() == 0
    assert await pool.fetchval("SELECT enqueued_at IS NOT NULL FROM schedule_runs WHERE job = $1", job.name)


async def test_a_slot_starts_once_but_a_retry_may_start_again(pool: asyncpg.Pool) -> None:
    slot = datetime(2026, 6, 3, 1, 0, tzinfo=UTC)
    name = unique("start-once")
    await pool.execute("INSERT INTO schedule_runs (job, slot) VALUES ($1, $2)", name, slot)
    assert await start_run(pool, name, slot, retry=False, lease_seconds=120) is not None
    assert await start_run(pool, name, slot, retry=False, lease_seconds=120) is None  # sweeper duplicate
    assert await start_run(pool, name, slot, retry=True, lease_seconds=120) is not None  # Dramatiq retry


def test_every_job_is_named_for_its_actor_and_earlier_names_still_override() -> None:
    declared = declared_schedule()
    assert [job.name for job in declared] == [job.actor for job in declared]
    jobs = {job.name: job for job in effective_schedule(declared, {"backups.nightly": {"enabled": False}})}
    assert jobs["backups.run_nightly"].enabled is False
    assert "backups.nightly" not in jobs


def test_invalid_cron_or_time_zone_names_the_job() -> None:
    with pytest.raises(ScheduleError, match="nightly: invalid cron"):
        ScheduledJob("nightly", "0 25 * * *", actor="x").check()
    with pytest.raises(ScheduleError, match="nightly: unknown time zone"):
        ScheduledJob("nightly", "0 2 * * *", actor="x", timezone="Europe/Pariss").check()
    with pytest.raises(ScheduleError, match=r"system\.scheduled_ping: invalid cron"):
        effective_schedule(declared_schedule(), {"system.scheduled_ping": {"cron": "every second"}})
    with pytest.raises(ScheduleError, match="unknown scheduled job"):
        effective_schedule(declared_schedule(), {"no.such": {"enabled": True}})


def test_bad_override_stops_the_scheduler_with_one_line_naming_the_job(database_url: str) -> None:
    env = bindery_env(SCHEDULER_OVERRIDES=json.dumps({"system.scheduled_ping": {"timezone": "Mars/Olympus"}}))
    result = run_bindery("scheduler", env=env, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "bindery: scheduled job system.scheduled_ping: unknown time zone 'Mars/Olympus'"
    ]


async def test_pruning_keeps_recent_runs_and_each_jobs_newest_slot(pool: asyncpg.Pool) -> None:
    now = datetime(2026, 9, 1, tzinfo=UTC)
    old_job, busy_job = unique("old"), unique("busy")
    rows = [
        (old_job, now - timedelta(days=90)),  # the only slot of a job: kept (resume point)
        (busy_job, now - timedelta(days=60)),  # old: pruned
        (busy_job, now - timedelta(days=1)),  # recent: kept
    ]
    await pool.executemany("INSERT INTO schedule_runs (job, slot) VALUES ($1, $2)", rows)
    await prune_records(pool, now)
    left = await pool.fetch(
        "SELECT job, slot FROM schedule_runs WHERE job = ANY($1) ORDER BY slot", [old_job, busy_job]
    )
    assert [(row["job"], row["slot"]) for row in left] == [rows[0], rows[2]]


def test_run_now_enqueues_once_and_list_shows_it(database_url: str, redis_client: redis.Redis) -> None:
    ran = run_bindery("scheduler", "run-now", "system.resend_lost_jobs")
    assert ran.returncode == 0, ran.stderr
    assert redis_client.llen("bindery:default") == 1
    listed = run_bindery("scheduler", "list", "--json")
    jobs = {row["job"]: row for row in json.loads(listed.stdout)}
    assert jobs["system.resend_lost_jobs"]["last_trigger"] == "manual"
    assert jobs["system.prune"]["timezone"] == "Europe/Paris"
    nightly = datetime.fromisoformat(jobs["system.prune"]["next_run_local"])
    assert (nightly.hour, nightly.minute) == (3, 17)
    assert (
        jobs["system.scheduled_ping"]["enabled"] is False
        and jobs["system.scheduled_ping"]["next_run_utc"] is None
    )
    unknown = run_bindery("scheduler", "run-now", "no.such")
    assert unknown.returncode == 1 and "no scheduled job named 'no.such'" in unknown.stderr
