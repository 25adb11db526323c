"""Tokens over /ws/ (PROTOCOL §1, §2.1): public-key mode refuses other algorithms with 4401 at the
handshake; an open connection whose token expires is closed 4401 (ADR 0041)."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async as sync_to_async

from tests.consumers.test_connection import close_code
from tests.factories import CustomerFactory
from tests.hub.test_identity import EC_KEY, RSA_KEY, public_key_pem, tokens_refused_in_public_key_mode

pytestmark = pytest.mark.django_db(transaction=True)

create_user = sync_to_async(CustomerFactory)


@pytest.mark.parametrize("key", ["rsa", "ec"])
async def test_public_key_mode_closes_4401_for_every_other_algorithm(settings, key: str) -> None:  # type: ignore[no-untyped-def]
    settings.HUB_JWT_PUBLIC_KEY = public_key_pem(RSA_KEY if key == "rsa" else EC_KEY)
    user = await create_user()
    refused = tokens_refused_in_public_key_mode(key, user.id)
    assert len(refused) == 11
    for name, token in refused:
        assert await close_code([(b"authorization", f"Bearer {token}".encode())]) == 4401, name
