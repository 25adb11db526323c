"""Deactivating a user in the Django admin signs them out everywhere, as `user_deactivate` does."""

from __future__ import annotations

from typing import Any
from unittest import mock

import orjson
import pytest
from django.test import Client
from django.urls import reverse

from hub import realtime
from hub.models import User
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@example.test", "pw-for-tests"))
    return client


def _closes(published: mock.MagicMock) -> list[tuple[str, dict[str, Any]]]:
    return [(channel, orjson.loads(payload)) for call in published.call_args_list for channel, payload in call.args[0]]


def test_the_deactivate_action_closes_the_users_connections(
    staff_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    alice, bob = CustomerFactory(), CustomerFactory()
    with mock.patch.object(realtime, "publish_sync") as published, django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:hub_user_changelist"), {"action": "deactivate", "_selected_action": [str(alice.id)]}
        )
    assert response.status_code == 302
    alice.refresh_from_db(), bob.refresh_from_db()
    assert (alice.is_active, bob.is_active) == (False, True)
    assert _closes(published) == [(realtime.user_channel(alice.id), {"close": 4401, "reason": "user deactivated"})]


def test_unticking_active_in_the_change_form_closes_the_users_connections(
    staff_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    alice = CustomerFactory()
    url = reverse("admin:hub_user_change", args=[alice.id])
    form = {
        "email": alice.email, "display_name": alice.display_name, "role": alice.role, "phone": alice.phone,
        "timezone": alice.timezone, "locale": alice.locale, "avatar_url": "", "last_login_0": "", "last_login_1": "",
    }  # fmt: skip
    with mock.patch.object(realtime, "publish_sync") as published, django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(url, form)  # "is_active" left out: unticked
    assert response.status_code == 302, response.content[:2000]
    alice.refresh_from_db()
    assert alice.is_active is False
    assert _closes(published) == [(realtime.user_channel(alice.id), {"close": 4401, "reason": "user deactivated"})]
    with mock.patch.object(realtime, "publish_sync") as published, django_capture_on_commit_callbacks(execute=True):
        staff_client.post(url, form)  # saved again while inactive: nothing more to close
    assert published.call_args_list == []
