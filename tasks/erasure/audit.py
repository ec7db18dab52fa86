"""The audit trail of erasures: who asked, each step, the outcome. Ids only."""

from __future__ import annotations

from typing import Any

import asyncpg

from workers.audit_log import AuditRecord, write_audit
from workers.db import Connection


async def audit(
    conn: asyncpg.Pool | Connection, actor: str, action: str, request_id: int, details: dict[str, Any]
) -> None:
    await write_audit(conn, AuditRecord(actor, action, "erasure_request", str(request_id), details))
