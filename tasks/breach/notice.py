"""The notice of a breach campaign: its subjects and bodies in French and English,
written by the operator or built from an incident file with the GDPR Art. 34 template.

Bodies are `string.Template` text: `${name}` (the person's name, else the business's,
else "Madame, Monsieur" / "customer"), `${first_name}`, `${last_name}`, `${business_name}`
and `${privacy_contact}` are filled per recipient; anything else is refused when the
campaign is created, not when the 50,000th message is rendered.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from string import Template

from workers.errors import JobError

PLACEHOLDERS = frozenset({"name", "first_name", "last_name", "business_name", "privacy_contact"})
LANGUAGES = ("fr", "en")


class NoticeError(JobError):
    """The notice cannot be sent as written; the message says what to change."""


@dataclass(frozen=True)
class Notice:
    subject_fr: str
    subject_en: str
    body_fr: str
    body_en: str

    def check(self) -> Notice:
        for language in LANGUAGES:
            subject = getattr(self, f"subject_{language}")
            if not subject.strip():
                raise NoticeError(f"the {language} subject is empty")
            refuse_line_breaks(subject, f"the {language} subject")
            body = getattr(self, f"body_{language}")
            if not body.strip():
                raise NoticeError(f"the {language} body is empty")
            template = Template(body)
            if not template.is_valid():
                raise NoticeError(f"the {language} body has a stray '$' (write '$$' for a dollar sign)")
            unknown = set(template.get_identifiers()) - PLACEHOLDERS
            if unknown:
                raise NoticeError(
                    f"the {language} body uses unknown placeholders {sorted(unknown)};"
                    f" known: {sorted(PLACEHOLDERS)}"
                )
        return self


def refuse_line_breaks(value: str, what: str) -> str:
    """Header values never carry CR or LF: refused here, never passed on."""
    if "\r" in value or "\n" in value:
        raise NoticeError(f"{what} holds a line break, which a mail header cannot carry")
    return value


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise NoticeError(f"cannot read {what} {path}: {type(error).__name__}") from None


def from_files(subject_fr: Path, subject_en: Path, body_fr: Path, body_en: Path) -> Notice:
    """A notice from four files; a subject file's trailing newline is not part of it."""
    return Notice(
        subject_fr=_read(subject_fr, "the French subject").rstrip("\n"),
        subject_en=_read(subject_en, "the English subject").rstrip("\n"),
        body_fr=_read(body_fr, "the French body"),
        body_en=_read(body_en, "the English body"),
    ).check()


# GDPR Art. 34(2) and Art. 33(3)(b)-(d): the nature of the breach, the contact point, the
# likely consequences, the measures taken; we add which data, and what to do.
SECTIONS = ("what_happened", "data_concerned", "likely_consequences", "measures_taken", "what_to_do")
HEADINGS = {
    "fr": {
        "what_happened": "Ce qui s'est passé",
        "data_concerned": "Les données concernées",
        "likely_consequences": "Les conséquences possibles",
        "measures_taken": "Les mesures que nous avons prises",
        "what_to_do": "Ce que nous vous conseillons de faire",
    },
    "en": {
        "what_happened": "What happened",
        "data_concerned": "Which data",
        "likely_consequences": "Likely consequences",
        "measures_taken": "What we have done",
        "what_to_do": "What we advise you to do",
    },
}
GREETING = {"fr": "Bonjour ${name},", "en": "Dear ${name},"}
INTRO = {
    "fr": "Nous vous écrivons parce que des données de votre compte ont pu être dérobées.",
    "en": "We are writing to you because data of your account may have been stolen.",
}
CONTACT = {
    "fr": "Pour toute question sur vos données, écrivez à ${privacy_contact}.",
    "en": "For any question about your data, write to ${privacy_contact}.",
}
DEFAULT_SUBJECT = {
    "fr": "Information importante sur la sécurité de vos données",
    "en": "Important information about the security of your data",
}


def from_incident(path: Path) -> Notice:
    """The built-in template filled from an incident file (TOML): a `[fr]` and an `[en]`
    table, each with every key of SECTIONS and, optionally, `subject`."""
    try:
        incident = tomllib.loads(_read(path, "the incident file"))
    except tomllib.TOMLDecodeError as error:
        raise NoticeError(f"the incident file {path} is not valid TOML: {error}") from None
    texts: dict[str, str] = {}
    for language in LANGUAGES:
        table = incident.get(language)
        if not isinstance(table, dict):
            raise NoticeError(f"the incident file has no [{language}] table")
        missing = [key for key in SECTIONS if not str(table.get(key, "")).strip()]
        if missing:
            raise NoticeError(f"the incident file's [{language}] table lacks {missing}")
        unknown = set(table) - set(SECTIONS) - {"subject"}
        if unknown:
            raise NoticeError(f"the incident file's [{language}] table has unknown keys {sorted(unknown)}")
        # The operator's text is text: a '$' in it is a dollar sign, not a placeholder.
        sections = [
            HEADINGS[language][key] + "\n\n" + str(table[key]).strip().replace("$", "$$") for key in SECTIONS
        ]
        texts[f"body_{language}"] = "\n\n".join(
            [GREETING[language], INTRO[language], *sections, CONTACT[language]]
        )
        texts[f"subject_{language}"] = str(table.get("subject") or DEFAULT_SUBJECT[language]).strip()
    return Notice(**texts).check()
