"""libpq's command-line tools (pg_dump, pg_restore) run without a password in their argv.

A process's arguments are readable by every user of the machine (`/proc/PID/cmdline`,
`ps`), its environment only by its owner: the password leaves the connection URL and
goes to the child in `PGPASSWORD`, whether the URL held it as userinfo or as a
`password=` parameter.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit


def tool_connection(dsn: str) -> tuple[str, dict[str, str]]:
    """(the URL without its password, the environment to run the tool in)."""
    parts = urlsplit(dsn)
    password = unquote(parts.password) if parts.password is not None else None
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password":
            password = value
        else:
            query.append((key, value))
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username is not None:
        netloc = f"{parts.username}@{netloc}"
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)  # never another database's
    if password is not None:
        env["PGPASSWORD"] = password
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query))), env
