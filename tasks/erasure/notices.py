"""The two emails of an erasure: the notice when it is asked for, the confirmation when
it is done. French first, then English; plain text."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from workers.mail import customer_message
from workers.settings import Settings

PARIS = ZoneInfo("Europe/Paris")


def request_notice(settings: Settings, to: str, request_id: int, run_after: datetime) -> EmailMessage:
    when = run_after.astimezone(PARIS).strftime("%d/%m/%Y %H:%M")
    contact = settings.privacy_contact
    body = f"""Bonjour,

Vous avez demandé la suppression de votre compte. Il est désactivé dès maintenant, et
votre compte et vos données seront supprimés définitivement le {when} (heure de Paris).
Pour annuler avant cette date, écrivez à {contact} en citant la demande n° {request_id}.

---

Hello,

You asked for your account to be deleted. It is disabled from now on, and your account
and data will be deleted for good on {when} (Paris time). To cancel before then, write
to {contact} quoting request no. {request_id}.
"""
    subject = "Suppression de votre compte / Deletion of your account"
    return customer_message(settings, to, subject, body, f"erasure-notice-{request_id}")


def completion_notice(settings: Settings, to: str, request_id: int) -> EmailMessage:
    body = f"""Bonjour,

Votre compte et vos données ont été supprimés (demande n° {request_id}). Seules les
factures sont conservées, sans lien avec votre compte, pendant la durée imposée par la loi.

---

Hello,

Your account and your data have been deleted (request no. {request_id}). Only invoices
are kept, unlinked from your account, for as long as the law requires.
"""
    subject = "Votre compte a été supprimé / Your account has been deleted"
    return customer_message(settings, to, subject, body, f"erasure-done-{request_id}")
