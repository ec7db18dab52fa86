"""Where breach notification holds data about an account (see workers/data_map.py)."""

from __future__ import annotations

from workers.data_map import Erase, Export, Place, Statement

PLACES = [
    Place(
        "breach_recipients",
        "address deleted; a row not yet sent counted as skipped",
        # The row stays (the campaign's counts), without the address.
        erase=Erase(
            "breach_recipients",
            Statement(
                """UPDATE breach_recipients
                      SET email = NULL,
                          error = CASE WHEN state IN ('sent', 'failed') THEN error ELSE 'account erased' END,
                          state = CASE WHEN state IN ('sent', 'failed') THEN state ELSE 'skipped' END
                    WHERE account_id = $1"""
            ),
        ),
        export=Export(
            "breach_notices",
            Statement(
                """SELECT r.campaign_id, r.email, r.state, r.sent_at, r.reply_code, c.subject_fr,
                          c.subject_en, c.body_fr, c.body_en
                     FROM breach_recipients r JOIN breach_campaigns c ON c.id = r.campaign_id
                    WHERE r.account_id = $1 ORDER BY c.id"""
            ),
            "Les avis de violation de données qui vous ont été adressés, et leur texte.",
            "The data breach notices addressed to you, and their text.",
            left_out={
                column: "bookkeeping of the sending"
                for column in ("attempts", "error", "lease_until", "next_attempt_at")
            },
        ),
    ),
    Place(
        "breach_campaigns",
        "the notice and counts: nothing of any one customer",
        kept="nothing of any one customer",
        not_exported="the notice's text is exported with each notice sent (breach_notices)",
    ),
]
