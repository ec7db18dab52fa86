"""The deadlines of GDPR Art. 12(3): one month from receipt, extendable by two more.

A period of months ends at the end of the day that has the same date as the day of
receipt, in the last month; when that month has no such day, at the end of its last day
(Regulation 1182/71, Art. 3(2)(c)): received on 31 January, due at the end of 28 or 29
February. Dates are read in Paris, where the controller answers. The regulation's move to
the next working day is not taken: answering earlier is always within the law.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
ANSWER_MONTHS = 1
MOST_EXTENDED_MONTHS = 3  # the month, and the two of the extension


def add_months(day: date, months: int) -> date:
    """The same date `months` later, or that month's last day when it has no such date."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def end_of(day: date) -> datetime:
    """The end of `day` in Paris: the midnight that starts the next one."""
    return datetime.combine(day + timedelta(days=1), time(0), PARIS)


def due_at(received_at: datetime) -> datetime:
    return end_of(add_months(received_at.astimezone(PARIS).date(), ANSWER_MONTHS))


def latest_extension(received_at: datetime) -> datetime:
    return end_of(add_months(received_at.astimezone(PARIS).date(), MOST_EXTENDED_MONTHS))


def days_left(deadline: datetime, now: datetime) -> int:
    """Whole days until the deadline; 0 on its last day, negative once it has passed."""
    return (deadline.astimezone(PARIS).date() - timedelta(days=1) - now.astimezone(PARIS).date()).days
