"""Production settings (DJANGO_SECURE=1, behind a TLS-terminating proxy) pass Django's deploy checks."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code_or_args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run([sys.executable, *code_or_args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def production(**extra: str) -> dict[str, str]:
    return {"DJANGO_SECURE": "1", "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_ALLOWED_HOSTS": "chat.example.com", **extra}


def test_check_deploy_is_clean_with_production_settings():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_them():
    """The check above is not vacuous: the development defaults fail it."""
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"])
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout


PROBE = """
import django, json
django.setup()
from django.test import Client
client = Client(SERVER_NAME="chat.example.com")
plain = client.get("/api/v1/schema")
proxied = client.get("/api/v1/schema", headers={"X-Forwarded-Proto": "https"})
probe = client.get("/healthz")
print(json.dumps({"plain": [plain.status_code, plain.get("Location")],
                  "proxied": [proxied.status_code, proxied.get("Strict-Transport-Security")],
                  "probe": probe.status_code}))
"""


def test_behind_the_proxy_plain_http_is_redirected_and_https_gets_hsts():
    import json

    result = run(["-c", PROBE], DJANGO_SETTINGS_MODULE="chatproject.settings", **production())
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["plain"] == [301, "https://chat.example.com/api/v1/schema"]
    assert seen["proxied"][0] == 200 and "max-age=31536000" in seen["proxied"][1]
    assert seen["probe"] == 200  # health probes from inside the network speak plain HTTP


def test_check_deploy_fails_with_an_error_when_the_secret_key_is_the_published_default():
    """Production settings without DJANGO_SECRET_KEY would sign sessions, CSRF tokens and
    password resets with the key anyone can read in settings.py: an Error, not a warning,
    so ``check --deploy`` at its default fail level stops the release."""
    settings = production()
    del settings["DJANGO_SECRET_KEY"]
    result = run(["manage.py", "check", "--deploy"], **settings)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "ERRORS:" in output and "ops.E001" in output


def test_the_published_key_is_refused_even_when_set_explicitly():
    from ops.checks import PUBLISHED_SECRET_KEY

    result = run(["manage.py", "check", "--deploy"], **production(DJANGO_SECRET_KEY=PUBLISHED_SECRET_KEY))
    assert result.returncode != 0 and "ops.E001" in result.stdout + result.stderr


def test_development_checks_keep_the_published_key():
    """``make run`` and the tests run on the development key: only --deploy refuses it."""
    result = run(["manage.py", "check"])
    assert result.returncode == 0, result.stdout + result.stderr
