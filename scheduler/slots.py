"""Cron slots in a job's own time zone, returned as UTC instants.

Cron expressions are read against the local wall clock, then each local time is
placed on the UTC timeline. A local time that does not exist (the spring-forward
hour) lands just after the gap; one that happens twice (the fall-back hour) is taken
at its first occurrence. Iterating naive local times means a daily 02:30 job is one
slot per calendar day, whatever the clocks do.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter


def _cron(expression: str, start: datetime) -> croniter:
    # Six fields: seconds come first (as in Quartz and most schedulers that have them).
    return croniter(expression, start, second_at_beginning=len(expression.split()) == 6)


def is_valid_cron(expression: str) -> bool:
    fields = len(expression.split())
    return fields in (5, 6) and bool(croniter.is_valid(expression, second_at_beginning=fields == 6))


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local time on the UTC timeline: fold=0 takes the first of a repeated
    time, and puts a skipped time after the gap (with the offset from before it)."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _local_start(zone: ZoneInfo, after: datetime) -> datetime:
    """Where to start iterating local times. Near a DST change a local time before
    local(after) can land after `after` (a skipped time is placed past the gap), so
    start an hour early there; elsewhere start at local(after) (an hour of a
    per-second job is 3,600 iterations we need not make)."""
    local = after.astimezone(zone)
    hour = timedelta(hours=1)
    if (after - hour).astimezone(zone).utcoffset() != local.utcoffset() or (after + hour).astimezone(
        zone
    ).utcoffset() != local.utcoffset():
        local -= hour
    return local.replace(tzinfo=None)


def slots_between(
    expression: str, zone: ZoneInfo, after: datetime, until: datetime
) -> tuple[list[datetime], datetime]:
    """Slots `s` with after < s <= until (both aware), in increasing UTC order, and the
    first slot after `until`."""
    iterator = _cron(expression, _local_start(zone, after))
    slots: list[datetime] = []
    last = after
    while True:
        slot = to_utc(iterator.get_next(datetime), zone)
        if slot > until:
            return slots, slot
        if slot > last:  # skips instants already produced (a gap maps two local times to one)
            last = slot
            slots.append(slot)


def next_slot(expression: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first slot strictly after `after`."""
    return slots_between(expression, zone, after, after)[1]
