"""seed_demo (the JSON, the demo admin's password, the banner) and mint_token."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jwt
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings

from hub.management.commands.seed_demo import ADMIN, DEMO_ADMIN_PASSWORD, stable_id
from hub.models import Booking, Conversation, ConversationMember, User

pytestmark = pytest.mark.django_db


def seed(tmp_path: Path, *args: str) -> tuple[dict, str]:
    """Runs seed_demo with --json; returns the JSON and what it printed."""
    out = io.StringIO()
    path = tmp_path / "demo.json"
    call_command("seed_demo", "--json", str(path), *args, stdout=out)
    return json.loads(path.read_text()), out.getvalue()


def admin_signs_in(password: str) -> bool:
    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": ADMIN[0], "password": password})
    return response.status_code == 302 and response.headers["Location"] == "/admin/"


def test_json_gives_each_demo_booking_with_its_conversation(tmp_path: Path) -> None:
    data, _ = seed(tmp_path)
    emails = {u["id"]: u["email"] for u in data["users"]}
    got = [(emails[b["customer_id"]], emails[b["provider_id"]], b["status"]) for b in data["bookings"]]
    assert got == [
        ("alice@demo.loconomy.test", "paula@demo.loconomy.test", "pending"),
        ("bob@demo.loconomy.test", "carl@demo.loconomy.test", "confirmed"),
        ("alice@demo.loconomy.test", "tina@demo.loconomy.test", "pending"),
    ]
    for row in data["bookings"]:
        booking = Booking.objects.get(id=row["id"])
        conversation = Conversation.objects.get(id=row["conversation_id"])
        assert conversation.booking_id == booking.id
        members = ConversationMember.objects.filter(conversation=conversation).values_list("user_id", flat=True)
        assert {str(m) for m in members} == {row["customer_id"], row["provider_id"]}
    again, _ = seed(tmp_path)
    assert again["bookings"] == data["bookings"]  # idempotent: same bookings, same conversations


@override_settings(DEBUG=True)
def test_with_debug_on_the_demo_admin_signs_in_to_admin_with_the_printed_password(tmp_path: Path) -> None:
    _, printed = seed(tmp_path, "--banner")
    admin = User.objects.get(email=ADMIN[0])
    assert (admin.is_staff, admin.is_superuser, admin.check_password(DEMO_ADMIN_PASSWORD)) == (True, True, True)
    line = f"  /admin/ sign-in: {settings.HUB_PUBLIC_URL}/admin/  email {ADMIN[0]}  password {DEMO_ADMIN_PASSWORD}"
    assert line in printed.splitlines()
    assert admin_signs_in(DEMO_ADMIN_PASSWORD)
    assert not admin_signs_in("wrong")


@override_settings(DEBUG=False)
def test_with_debug_off_no_known_admin_password_is_set_or_printed(tmp_path: Path) -> None:
    _, printed = seed(tmp_path, "--banner")
    admin = User.objects.get(email=ADMIN[0])
    assert admin.has_usable_password() is False
    assert DEMO_ADMIN_PASSWORD not in printed
    assert "/admin/ sign-in" not in printed
    assert settings.HUB_JWT_SECRET not in printed
    assert not admin_signs_in(DEMO_ADMIN_PASSWORD)


def test_a_dev_password_left_by_a_debug_seed_is_removed_by_a_seed_with_debug_off(tmp_path: Path) -> None:
    with override_settings(DEBUG=True):
        seed(tmp_path)
    assert admin_signs_in(DEMO_ADMIN_PASSWORD)
    with override_settings(DEBUG=False):
        seed(tmp_path)
    assert User.objects.get(email=ADMIN[0]).has_usable_password() is False
    assert not admin_signs_in(DEMO_ADMIN_PASSWORD)


def test_banner_names_the_pair_their_booking_and_conversation(tmp_path: Path) -> None:
    data, printed = seed(tmp_path, "--banner")
    booking = data["bookings"][0]
    alice = next(u for u in data["users"] if u["email"] == "alice@demo.loconomy.test")
    lines = printed.splitlines()
    pair = "alice@demo.loconomy.test (customer) and paula@demo.loconomy.test (provider)"
    assert f"Try them: {pair} share booking" in lines
    assert f"  {booking['id']} (pending) and its conversation {booking['conversation_id']}." in lines
    url = f"{settings.HUB_PUBLIC_URL}/api/bookings/{booking['id']}"
    curl = f"  curl -s -H 'Authorization: Bearer {alice['token']}' {url}"
    assert curl in lines
    one_liners = [line for line in lines if line.startswith("  .venv/bin/python -c ")]
    assert len(one_liners) == 1
    assert alice["token"] in one_liners[0] and booking["conversation_id"] in one_liners[0]


def test_mint_token_by_email_any_case_and_by_id(tmp_path: Path) -> None:
    seed(tmp_path)
    alice_id = str(stable_id("user", "alice@demo.loconomy.test"))
    for who in ("Alice@Demo.Loconomy.test", alice_id):
        out = io.StringIO()
        call_command("mint_token", who, "--ttl", "120", stdout=out)
        claims = jwt.decode(out.getvalue().strip(), settings.HUB_JWT_SECRET, algorithms=["HS256"])
        assert (claims["sub"], claims["role"], claims["exp"] - claims["iat"]) == (alice_id, "customer", 120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody@demo.loconomy.test"], "no user 'nobody@demo.loconomy.test'"),
        (["alice@demo.loconomy.test", "--ttl", "0"], "--ttl must be positive"),
    ],
)
def test_mint_token_refuses_unknown_users_and_bad_ttl(tmp_path: Path, args: list[str], message: str) -> None:
    seed(tmp_path)
    with pytest.raises(CommandError) as caught:
        call_command("mint_token", *args, stdout=io.StringIO())
    assert str(caught.value) == message
