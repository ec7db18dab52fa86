"""Mail cannot be downgraded (workers/smtp_server.py): against real aiosmtpd servers with
and without STARTTLS, certificates from a private CA (trustme)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from workers.devstack.servers import free_port
from workers.mail import send_message
from workers.production_rules import production_problems
from workers.settings import Settings, SettingsError, load_settings
from workers.smtp_pool import SmtpPool
from workers.smtp_server import MailNotProtected, is_loopback, smtp_server


def _over_tls(server: Any) -> bool:
    return server.transport.get_extra_info("sslcontext") is not None


class Recorder:
    def __init__(self) -> None:
        self.delivered: list[tuple[str, bool]] = []  # (recipient, over TLS)
        self.logins: list[tuple[str, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.delivered += [(rcpt, _over_tls(server)) for rcpt in envelope.rcpt_tos]
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), _over_tls(server)))
        return AuthResult(success=data.password == b"s3cret")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@contextmanager
def smtp_server_on_loopback(
    context: ssl.SSLContext | None = None, *, implicit: bool = False
) -> Iterator[tuple[int, Recorder]]:
    recorder = Recorder()
    port = free_port()
    options: dict[str, Any] = {"authenticator": recorder.authenticate, "auth_require_tls": True}
    if implicit:
        # aiosmtpd counts only STARTTLS as TLS for AUTH; here the socket is TLS already.
        options.update(server_hostname="127.0.0.1", auth_require_tls=False)
        controller = Controller(recorder, hostname="127.0.0.1", port=port, ssl_context=context, **options)
    else:
        controller = Controller(recorder, hostname="127.0.0.1", port=port, tls_context=context, **options)
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def _production(url: str, ca_file: Path | None = None) -> Settings:
    # Built directly: load_settings refuses a loopback server in production, and the
    # tests' servers can only listen on loopback. The senders read it all the same.
    return Settings(bindery_env="production", smtp_url=url, smtp_ca_file=ca_file)


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "bindery <no-reply@ex.fr>", "someone@ex.fr", "hello"
    message.set_content("hello")
    return message


async def test_a_server_without_starttls_gets_nothing_not_even_the_login() -> None:
    with smtp_server_on_loopback() as (port, recorder):
        settings = _production(f"smtp://ops:s3cret@127.0.0.1:{port}")
        with pytest.raises(MailNotProtected, match="does not offer STARTTLS"):
            await send_message(settings, _message())
        pool = SmtpPool(settings, 1)
        with pytest.raises(MailNotProtected):
            async with pool.connection():
                pass
    assert recorder.delivered == [] and recorder.logins == []


async def test_starttls_is_used_and_the_certificate_checked(ca: trustme.CA, ca_file: Path) -> None:
    with smtp_server_on_loopback(_server_context(ca)) as (port, recorder):
        await send_message(_production(f"smtp://ops:s3cret@127.0.0.1:{port}", ca_file), _message())
        pool = SmtpPool(_production(f"smtp://ops:s3cret@127.0.0.1:{port}", ca_file), 1)
        async with pool.connection() as client:
            await client.send_message(_message())
        await pool.close()
        # The system's store does not know the private CA: no send, however tempting.
        with pytest.raises(ssl.SSLCertVerificationError):
            await send_message(_production(f"smtp://ops:s3cret@127.0.0.1:{port}"), _message())
    assert recorder.delivered == [("someone@ex.fr", True)] * 2
    assert recorder.logins == [("ops", True)] * 2


async def test_smtps_is_tls_from_the_first_byte(ca: trustme.CA, ca_file: Path) -> None:
    with smtp_server_on_loopback(_server_context(ca), implicit=True) as (port, recorder):
        await send_message(_production(f"smtps://ops:s3cret@127.0.0.1:{port}", ca_file), _message())
    assert recorder.delivered == [("someone@ex.fr", True)] and recorder.logins == [("ops", True)]


async def test_the_development_loopback_sink_alone_is_plaintext() -> None:
    with smtp_server_on_loopback() as (port, recorder):
        await send_message(Settings(smtp_url=f"smtp://127.0.0.1:{port}"), _message())
    assert recorder.delivered == [("someone@ex.fr", False)]


@pytest.mark.parametrize(
    ("url", "development", "security"),
    [
        ("smtp://127.0.0.1:8025", True, "plaintext"),
        ("smtp://[::1]:8025", True, "plaintext"),
        ("smtp://LocalHost:8025", True, "plaintext"),
        ("smtp://mail.example.fr", True, "starttls"),  # development, but a real server
        ("smtp://127.0.0.1:8025", False, "starttls"),
        ("SMTP://user:pw@mail.example.fr", False, "starttls"),
        ("smtps://mail.example.fr", False, "implicit-tls"),
    ],
)
def test_one_reading_of_smtp_url(url: str, development: bool, security: str) -> None:
    assert smtp_server(url, development=development).security == security


def test_ports_and_credentials_from_the_url() -> None:
    server = smtp_server("smtp://us%40er:p%2Fw@mail.example.fr", development=False)
    assert (server.port, server.username, server.password) == (587, "us@er", "p/w")
    assert smtp_server("smtps://mail.example.fr", development=False).port == 465


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1.2.3", "[::1]", "::1", "localhost", "LOCALHOST", "a.localhost"]
)
def test_loopback_in_any_spelling(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SMTP_URL", "smtp://[::1]:8025"),
        ("SMTP_URL", "SMTP://LOCALHOST:8025"),
        ("S3_ENDPOINT_URL", "HTTP://s3.fr-par.scw.cloud"),
        ("S3_ENDPOINT_URL", "http://s3.fr-par.scw.cloud"),
    ],
)
def test_production_refuses_loopback_sinks_and_plain_http_in_any_case(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings().model_copy(
        update={"bindery_env": "production", variable.lower(): _as_setting(variable, value)}
    )
    assert variable in [name for name, _ in production_problems(settings)]


def _as_setting(variable: str, value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value) if variable == "SMTP_URL" else value


def test_a_missing_ca_file_stops_the_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SMTP_CA_FILE", str(tmp_path / "none.pem"))
    with pytest.raises(SettingsError, match="SMTP_CA_FILE"):
        load_settings()
