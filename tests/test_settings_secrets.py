"""With DJANGO_DEBUG off the settings refuse the development secrets (PROTOCOL §0), in a fresh process each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL = {
    "DJANGO_SECRET_KEY": "a-real-secret-key-for-this-test-" + "x" * 20,
    "HUB_JWT_SECRET": "a-real-jwt-secret-for-this-test-" + "y" * 20,
    "HUB_EVENTS_SECRET": "whsec_cmVhbC1ldmVudHMtc2VjcmV0LWZvci10aGlzLXRlc3Q=",
}
DEV = {
    "DJANGO_SECRET_KEY": "dev-only-insecure-secret-change-me",
    "HUB_JWT_SECRET": "dev-only-hub-jwt-secret-change-me-0123456789",
    "HUB_EVENTS_SECRET": "whsec_ZGV2LW9ubHktaHViLWV2ZW50cy1zZWNyZXQ=",
}
PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"


def load_settings(**env: str | None) -> subprocess.CompletedProcess[str]:
    """Load config.settings in a fresh interpreter with this environment (None: unset)."""
    full = {k: v for k, v in os.environ.items() if k not in (*REAL, "HUB_JWT_PUBLIC_KEY", "DJANGO_DEBUG")}
    full.update({k: v for k, v in env.items() if v is not None})
    full["DJANGO_SETTINGS_MODULE"] = "config.settings"
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY[:4])"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)


def refused(result: subprocess.CompletedProcess[str], variable: str) -> bool:
    return result.returncode != 0 and "ImproperlyConfigured" in result.stderr and variable in result.stderr


def test_real_secrets_load_with_debug_off() -> None:
    result = load_settings(DJANGO_DEBUG="0", **REAL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "a-re"


@pytest.mark.parametrize("variable", list(REAL))
@pytest.mark.parametrize("how", ["unset", "empty", "dev", "placeholder"])
def test_each_missing_or_development_secret_is_refused_by_name(variable: str, how: str) -> None:
    value = {"unset": None, "empty": "", "dev": DEV[variable], "placeholder": "change-me"}[how]
    if how == "placeholder" and variable == "HUB_EVENTS_SECRET":
        value = "whsec_change-me"  # .env.example's
    result = load_settings(DJANGO_DEBUG="0", **{**REAL, variable: value})
    assert refused(result, variable), (result.returncode, result.stderr[-500:])
    others = [name for name in REAL if name != variable]
    assert not any(f"{name} " in result.stderr for name in others), result.stderr[-500:]


def test_debug_off_is_the_default() -> None:
    result = load_settings(DJANGO_DEBUG=None, **{**REAL, "DJANGO_SECRET_KEY": None})
    assert refused(result, "DJANGO_SECRET_KEY"), result.stderr[-500:]


def test_a_public_key_replaces_the_jwt_secret() -> None:
    result = load_settings(DJANGO_DEBUG="0", HUB_JWT_PUBLIC_KEY=PUBLIC_KEY, **{**REAL, "HUB_JWT_SECRET": None})
    assert result.returncode == 0, result.stderr


def test_debug_on_keeps_the_development_values() -> None:
    result = load_settings(DJANGO_DEBUG="1", DJANGO_SECRET_KEY=None, HUB_JWT_SECRET=None, HUB_EVENTS_SECRET=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "dev-"
