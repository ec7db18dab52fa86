"""The email that gives a customer the link to their export, in French then English."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from workers.mail import customer_message
from workers.settings import Settings


def export_notice(
    settings: Settings, to: str, request_id: int, link: str, expires_at: datetime
) -> EmailMessage:
    when = expires_at.strftime("%d/%m/%Y %H:%M")
    body = f"""Bonjour,

Vous avez demandé une copie de vos données (demande n° {request_id}). Elle est prête :
téléchargez-la avec ce lien, valable jusqu'au {when} (heure de Paris) :

{link}

L'archive (ZIP) contient un fichier par catégorie de données, en JSON et en CSV, et un
fichier README.txt qui dit ce qu'est chacun. Pour toute question : {settings.privacy_contact}.

---

Hello,

You asked for a copy of your data (request no. {request_id}). It is ready: download it
with this link, valid until {when} (Paris time):

{link}

The archive (ZIP) holds one file per category of data, in JSON and CSV, and a README.txt
that says what each one is. Any question: {settings.privacy_contact}.
"""
    subject = "Vos données / Your data"
    return customer_message(settings, to, subject, body, f"privacy-export-{request_id}")
