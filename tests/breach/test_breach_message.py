"""The breach notice and its message: templates checked when written, values escaped,
headers safe, one Message-ID per (campaign, account)."""

from __future__ import annotations

import binascii
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.breach.message import CompiledMessage, Recipient, message_id
from tasks.breach.notice import Notice, NoticeError, from_files, from_incident

DATA = Path(__file__).parent.parent / "data"
SENDER = "Bindery <no-reply@bindery.example>"
NOTICE = Notice(
    subject_fr="Sécurité de vos données",
    subject_en="Security of your data",
    body_fr="Bonjour ${name},\n\nVotre entreprise ${business_name} est concernée.\n\n${privacy_contact}",
    body_en="Dear ${name},\n\nYour business ${business_name} is concerned.\n\nContact: ${privacy_contact}",
)


def _render(recipient: Recipient, notice: Notice = NOTICE) -> bytes:
    return CompiledMessage(7, notice, sender=SENDER, privacy_contact="privacy@bindery.example").message(
        recipient
    )


def test_a_message_is_multipart_alternative_french_first_with_the_headers_it_needs() -> None:
    parsed = message_from_bytes(
        _render(Recipient(42, "client@exemple.fr", "Zoé", "Martin", "Café")), policy=policy.default
    )
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = (part.get_content() for part in parsed.iter_parts())
    assert text.index("Bonjour Zoé Martin") < text.index("Dear Zoé Martin")
    assert html.index("Bonjour Zoé Martin") < html.index("Dear Zoé Martin")
    assert parsed["Subject"] == "Sécurité de vos données / Security of your data"
    assert parsed["Message-ID"] == "<breach.7.42@bindery.example>" == message_id(7, 42, SENDER)
    assert (
        parsed["Auto-Submitted"] == "auto-generated"
        and parsed["Date"]
        and parsed["To"] == "client@exemple.fr"
    )
    raw = _render(Recipient(42, "client@exemple.fr", "Zoé", "Martin", "Café" * 500))
    assert b"\n" not in raw.replace(b"\r\n", b"") and max(map(len, raw.split(b"\r\n"))) <= 998
    assert b"subject: =?utf-8?" in raw.split(b"\r\n\r\n", 1)[0].lower()  # the accented subject is encoded


HOSTILE = Recipient(
    43,
    "victim@exemple.fr",
    first_name="Jeanne\r\nBcc: attacker@evil.example",
    last_name='"Dupont" <b>',
    business_name="<script>alert('x')</script> Ελληνικά & 東京",
)


def test_hostile_names_are_inert_no_header_injection_html_escaped_text_correct() -> None:
    raw = _render(HOSTILE)
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert b"Bcc" not in headers and b"attacker" not in headers
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed.get_all("Bcc") is None and parsed["To"] == "victim@exemple.fr"
    text, html = (part.get_content() for part in parsed.iter_parts())
    # The text says exactly what the account holds, a line break made a space.
    assert 'Bonjour Jeanne Bcc: attacker@evil.example "Dupont" <b>,' in text
    assert "<script>alert('x')</script> Ελληνικά & 東京" in text
    # The HTML escapes every value: no tag, no attribute break-out.
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Ελληνικά &amp; 東京" in html
    assert "&quot;Dupont&quot; &lt;b&gt;" in html


def test_a_recipient_address_with_a_line_break_is_refused_not_passed_on() -> None:
    with pytest.raises(NoticeError, match="line break"):
        _render(Recipient(44, "a@exemple.fr\r\nBcc: b@evil.example"))
    for address in (
        "no-at-sign",
        "a\xa0b@exemple.fr",
        "a\x0bb@exemple.fr",
        "<a@exemple.fr>",
        'a"b@exemple.fr',
    ):
        with pytest.raises(NoticeError, match="not a mail address"):
            _render(Recipient(45, address))
    assert b"To: zo\xc3\xa9@exemple.fr\r\n" in _render(Recipient(45, "zoé@exemple.fr"))  # sent with SMTPUTF8


def test_a_person_without_a_name_is_greeted_by_the_business_or_politely() -> None:
    business = message_from_bytes(
        _render(Recipient(46, "a@exemple.fr", None, None, "Boulangerie")), policy=policy.default
    )
    assert "Bonjour Boulangerie," in business.get_body(("plain",)).get_content()
    nobody = message_from_bytes(_render(Recipient(47, "b@exemple.fr")), policy=policy.default)
    text = nobody.get_body(("plain",)).get_content()
    assert "Bonjour Madame, Monsieur," in text and "Dear customer," in text


def test_notices_are_checked_when_written() -> None:
    with pytest.raises(NoticeError, match="line break"):
        Notice("a\r\nBcc: x", "b", "c", "d").check()
    with pytest.raises(NoticeError, match=r"unknown placeholders \['password'\]"):
        Notice("a", "b", "Bonjour ${password}", "d").check()
    with pytest.raises(NoticeError, match="stray"):
        Notice("a", "b", "Cost: $ 5", "d").check()
    with pytest.raises(NoticeError, match="en body is empty"):
        Notice("a", "b", "c", "  ").check()


def test_the_art_34_template_is_filled_from_an_incident_file(tmp_path: Path) -> None:
    notice = from_incident(DATA / "incident.toml")
    for heading in (
        "Ce qui s'est passé",
        "Les données concernées",
        "Les conséquences possibles",
        "Les mesures que nous avons prises",
        "Ce que nous vous conseillons de faire",
    ):
        assert heading in notice.body_fr
    prepared = CompiledMessage(1, notice, sender=SENDER, privacy_contact="dpo@x.example")
    parsed = message_from_bytes(prepared.message(Recipient(1, "a@exemple.fr", "Zoé")), policy=policy.default)
    body = parsed.get_body(("plain",)).get_content()
    assert "$100" in body and "dpo@x.example" in body and "What we advise you to do" in body

    incomplete = tmp_path / "incident.toml"
    incomplete.write_text('[fr]\nwhat_happened = "x"\n[en]\n')
    with pytest.raises(NoticeError, match=r"\[fr\] table lacks \['data_concerned'"):
        from_incident(incomplete)
    incomplete.write_text("not toml [")
    with pytest.raises(NoticeError, match="not valid TOML"):
        from_incident(incomplete)


def test_notices_from_files(tmp_path: Path) -> None:
    files = {}
    for name, content in (
        ("sfr", "Sujet\n"),
        ("sen", "Subject\n"),
        ("bfr", "Bonjour ${name}"),
        ("ben", "Hi"),
    ):
        files[name] = tmp_path / name
        files[name].write_text(content)
    notice = from_files(files["sfr"], files["sen"], files["bfr"], files["ben"])
    assert (notice.subject_fr, notice.body_en) == ("Sujet", "Hi")
    with pytest.raises(NoticeError, match="cannot read the English body"):
        from_files(files["sfr"], files["sen"], files["bfr"], tmp_path / "missing")


LONG_NOTICE = Notice(
    subject_fr="Sécurité",
    subject_en="Security",
    body_fr="Bonjour ${name},\n\n" + "é" * 90 + " ${first_name}\n  espaces   \n\n$$5 ${business_name}",
    body_en="Dear ${name}!\n\n" + "x" * 200 + "\n\n<b>${last_name}</b> & co\n\n\n\nend ${privacy_contact}  ",
)
_PIECES = st.sampled_from(["a", "é", " ", "<", "&", "=", ".", "\t", "\r\n", "\n", "ж", "😀", "x" * 70])
_NAME = st.none() | st.lists(_PIECES, max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(first=_NAME, last=_NAME, business=_NAME)
def test_the_compiled_message_equals_the_message_rendered_whole(
    first: str | None, last: str | None, business: str | None
) -> None:
    """A campaign's message is compiled once and filled in per recipient; for any names
    it must be byte for byte what rendering and encoding each whole part gives, long
    lines' soft breaks included."""
    recipient = Recipient(1, "a@exemple.fr", first, last, business)
    for notice in (LONG_NOTICE, NOTICE):
        prepared = CompiledMessage(7, notice, sender=SENDER, privacy_contact="privacy@bindery.example")
        parts = prepared.parts(recipient)
        assert parts == prepared.reference_parts(recipient)
        for part, encoded in zip(prepared.texts(recipient), parts, strict=True):
            assert encoded == binascii.b2a_qp(part.replace("\n", "\r\n").encode(), istext=True, header=False)


def test_names_that_compile_inexactly_are_rendered_whole() -> None:
    """In LONG_NOTICE a paragraph ends with the business name: when it is empty, the
    paragraph loses the space before it, which the compiled message would keep."""
    prepared = CompiledMessage(7, LONG_NOTICE, sender=SENDER, privacy_contact="privacy@bindery.example")
    assert (False, False, False) in prepared.exact and (False, False, True) not in prepared.exact
    without_business = Recipient(1, "a@exemple.fr", "Zoé", "Martin", None)
    text = message_from_bytes(prepared.message(without_business), policy=policy.default).get_body(("plain",))
    assert text is not None and "\r\n$5\r\n" in text.get_content()  # not "$5 "
    assert CompiledMessage(7, NOTICE, sender=SENDER, privacy_contact="p@x.example").exact == {
        (first, last, business)
        for first in (False, True)
        for last in (False, True)
        for business in (False, True)
    }
