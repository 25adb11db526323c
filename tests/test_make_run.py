"""What a newcomer runs first: `make install`'s output, `make token`, and the `make run` banner's examples."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path

import jwt
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from hub.management.commands.seed_demo import stable_id
from tests import conftest
from tests.conftest import ROOT, ServerProcess

FAKE_PIP = """#!/usr/bin/env bash
echo "Looking in indexes: https://pypi.org/simple, file:///opt/pypi/simple"
echo "WARNING: Location 'file:///opt/pypi-more/simple/six/' is ignored: it is neither a file nor a directory."
echo "Processing /opt/pypi/files/six-1.17.0-py2.py3-none-any.whl"
echo "WARNING: Location 'file:///opt/pypi-more/simple/django/' is ignored: it is neither a file nor a directory." >&2
echo "WARNING: Location 'https://example.test/simple/x/' is ignored: it is neither a file nor a directory."
echo "ERROR: No matching distribution found for nothing==1" >&2
exit {status}
"""


def run_install(tmp_path: Path, status: int) -> subprocess.CompletedProcess[str]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, body in (("python", "#!/bin/sh\nexit 0\n"), ("pip", FAKE_PIP.format(status=status))):
        (venv / "bin" / name).write_text(body)
        (venv / "bin" / name).chmod(0o755)
    return subprocess.run(
        ["scripts/install.sh"], cwd=ROOT, env={**os.environ, "VENV": str(venv)}, capture_output=True, text=True
    )


@pytest.mark.parametrize("status", [0, 1])
def test_install_shows_pip_output_without_the_local_index_notes_and_keeps_its_status(
    tmp_path: Path, status: int
) -> None:
    result = run_install(tmp_path, status)
    assert result.returncode == status
    assert result.stdout == ""  # progress goes to stderr: `make -s token` prints only the token
    lines = result.stderr.splitlines()
    packages = len([line for line in (ROOT / "requirements.lock").read_text().splitlines() if line])
    assert lines == [
        f"install: {packages} pinned packages from requirements.lock into {tmp_path / 'venv'}"
        " (a minute or two the first time)",
        "Looking in indexes: https://pypi.org/simple, file:///opt/pypi/simple",
        "Processing /opt/pypi/files/six-1.17.0-py2.py3-none-any.whl",
        "WARNING: Location 'https://example.test/simple/x/' is ignored: it is neither a file nor a directory.",
        "ERROR: No matching distribution found for nothing==1",
        "install: done" if status == 0 else "install: pip failed (exit 1)",
    ]


@pytest.mark.django_db(transaction=True)
def test_make_token_prints_one_jwt_for_the_demo_user_and_nothing_else() -> None:
    env = {**os.environ, **conftest.test_database_env()}
    result = subprocess.run(
        ["scripts/run.sh", "token", "alice@demo.loconomy.test", "90"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    claims = jwt.decode(result.stdout.strip(), settings.HUB_JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["exp"] - claims["iat"]) == (str(stable_id("user", "alice@demo.loconomy.test")), 90)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_banners_websocket_one_liner_works_as_printed(web_server: ServerProcess) -> None:
    out = io.StringIO()
    with override_settings(HUB_PUBLIC_URL=web_server.url):
        call_command("seed_demo", "--banner", stdout=out)
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("  .venv/bin/python -c ")]
    result = subprocess.run(["bash", "-c", line.strip()], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no deprecation warning either
    hello, *answers = (json.loads(frame) for frame in result.stdout.splitlines())
    assert hello["type"] == "hello" and hello["data"]["user"]["display_name"] == "Alice Customer"
    assert sorted(frame["type"] for frame in answers) == ["message.created", "reply"]  # either may come first
    reply = next(frame for frame in answers if frame["type"] == "reply")
    created = next(frame for frame in answers if frame["type"] == "message.created")
    assert reply["ref"] == "1" and reply["data"]["message"] == created["data"]["message"]
    assert (reply["data"]["message"]["body"], reply["data"]["message"]["seq"]) == ("Hello!", 1)


def env_example() -> tuple[dict[str, str], set[str]]:
    """.env.example's assignments, and the names it documents (commented-out examples included)."""
    values: dict[str, str] = {}
    named: set[str] = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        if not line or line.startswith("#"):
            match = re.match(r"^# ([A-Z][A-Z0-9_]*)=", line)
            if match:
                named.add(match.group(1))
            continue
        name, _, value = line.partition("=")
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), line
        assert " #" not in value, f"an inline comment would become part of the value: {line}"
        values[name] = value.strip('"')
    return values, named | set(values)


def test_env_example_names_every_variable_the_hub_reads() -> None:
    read = set(re.findall(r'env\.[a-z]+\("([A-Z][A-Z0-9_]*)"', (ROOT / "config" / "settings.py").read_text()))
    read |= set(re.findall(r'os\.environ\.get\("([A-Z][A-Z0-9_]*)"', (ROOT / "config" / "web.py").read_text()))
    read |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", (ROOT / "Procfile").read_text()))
    _, named = env_example()
    assert sorted(read - named) == []


def test_env_example_copied_to_env_loads_as_it_stands() -> None:
    values, _ = env_example()
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.PORT, s.HUB_ALLOWED_ORIGINS, s.CELERY_BROKER_URL == s.REDIS_URL, s.HUB_EMAIL_FROM)"
    )
    env = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings", **values, "DJANGO_DEBUG": "1"}
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "8000 ['127.0.0.1', 'localhost'] True Loconomy <no-reply@loconomy.test>\n"
