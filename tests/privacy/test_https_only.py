"""Promise: "Our services are accessible in HTTPS (HTTP encrypted) only."

`bindery web` serves TLS itself, or sits behind a trusted proxy and refuses what did
not come through it over HTTPS; production refuses to start with neither (settings)."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

from tests.http import answers, call
from tests.processes import bindery, bindery_env, run_bindery, wait_until
from tests.workers.test_settings import PRODUCTION_READY
from workers.devstack.servers import free_port


def test_web_speaks_tls_with_the_configured_certificate(database_url: str, tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)

    env = dict(PRODUCTION_READY)
    del env["TRUST_PROXY"]
    env.update(TLS_CERT_FILE=str(cert_file), TLS_KEY_FILE=str(key_file))
    port = free_port()
    with bindery("web", "--port", str(port), log=tmp_path / "web.log", env=bindery_env(**env)):
        url = f"https://127.0.0.1:{port}/healthz"
        wait_until(lambda: answers(url, client_context), 20, "HTTPS to answer")
        status, headers, _ = call("GET", url, context=client_context)
        assert status == 200
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        # Plain HTTP on the TLS port gets nowhere.
        assert not answers(f"http://127.0.0.1:{port}/healthz")


def test_behind_a_proxy_plain_http_is_refused(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    with bindery("web", "--port", str(port), log=tmp_path / "web.log", env=bindery_env(**PRODUCTION_READY)):
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(f"{base}/healthz"), 20, "bindery web to answer")
        status, headers, body = call("GET", f"{base}/openapi.json", headers={"X-Forwarded-Proto": "http"})
        assert status == 403 and body["error"] == "https_required"
        assert "Strict-Transport-Security" in headers
        status, _, _ = call("GET", f"{base}/openapi.json", headers={"X-Forwarded-Proto": "https"})
        assert status == 200
        assert call("GET", f"{base}/openapi.json")[0] == 403  # no header: not known to be HTTPS
        # The nearest proxy's value counts, not one the client put before it.
        assert call("GET", f"{base}/openapi.json", headers={"X-Forwarded-Proto": "https, http"})[0] == 403
        assert call("GET", f"{base}/openapi.json", headers={"X-Forwarded-Proto": "http, https"})[0] == 200


def test_behind_a_proxy_the_header_counts_only_from_a_trusted_proxy(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = bindery_env(**PRODUCTION_READY, TRUSTED_PROXIES="10.0.0.0/8,fd00::/8")
    with bindery("web", "--port", str(port), log=tmp_path / "web.log", env=env):
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(f"{base}/healthz"), 20, "bindery web to answer")
        # 127.0.0.1 is not one of the proxies: anyone can write the header.
        status, _, body = call("GET", f"{base}/openapi.json", headers={"X-Forwarded-Proto": "https"})
        assert status == 403 and body["error"] == "https_required"


def test_a_malformed_proxy_network_stops_the_process() -> None:
    result = run_bindery(
        "web", "--port", "1", env=bindery_env(**PRODUCTION_READY, TRUSTED_PROXIES="10.0.0.0/33")
    )
    assert result.returncode == 2 and "TRUSTED_PROXIES" in result.stderr


def test_production_without_tls_or_proxy_refuses_to_start() -> None:
    env = bindery_env(**PRODUCTION_READY)
    del env["TRUST_PROXY"]
    result = run_bindery("web", "--port", "1", env=env)
    assert result.returncode == 2
    assert "TLS_CERT_FILE" in result.stderr
