"""Tokens over /ws/ (PROTOCOL §1, §2.1): public-key mode refuses other algorithms with 4401 at the
handshake; an open connection whose token expires is closed 4401 (ADR 0041)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async as sync_to_async
from django.test import Client

from consumers.idle import idle_sweeper
from tests.conftest import token_for, ws_connect
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


async def closed_within(client: Any, seconds: float) -> tuple[str, float]:
    """Wait for the hub to close `client`; (how, after how long)."""
    started = time.monotonic()
    with pytest.raises(ConnectionError) as closed:
        while time.monotonic() - started < seconds:
            await client.recv_frame(seconds)
    return str(closed.value), time.monotonic() - started


async def test_a_connection_is_closed_4401_when_its_token_expires(settings) -> None:  # type: ignore[no-untyped-def]
    settings.HUB_JWT_LEEWAY_S = 0
    user = await create_user()
    async with ws_connect(token=token_for(user, ttl_s=3)) as short, ws_connect(token=token_for(user, ttl_s=2)) as shorter:  # noqa: E501
        async with ws_connect(token=token_for(user, ttl_s=600)) as long:
            assert "pong" in await short.request("ping")
            how, after = await closed_within(shorter, 5)
            assert how == "closed 4401" and after < 2.5
            how, _ = await closed_within(short, 5)
            assert how == "closed 4401"
            assert "pong" in await long.request("ping")  # a valid token's connection goes on
    assert idle_sweeper()._lapses == {}  # type: ignore[attr-defined]


async def test_the_leeway_applies_to_an_open_connection_too(settings) -> None:  # type: ignore[no-untyped-def]
    settings.HUB_JWT_LEEWAY_S = 2
    user = await create_user()
    async with ws_connect(token=token_for(user, ttl_s=1)) as client:
        await asyncio.sleep(1.5)
        assert "pong" in await client.request("ping")  # past exp, within the leeway
        how, _ = await closed_within(client, 5)
        assert how == "closed 4401"


def ticket_with(**auth: Any) -> str:
    client = Client()
    if "session_expiry_s" in auth:
        user = auth["user"]
        client.force_login(user)
        session = client.session
        session.set_expiry(auth["session_expiry_s"])
        session.save()
        response = client.post("/api/ws-tickets")
    else:
        response = client.post("/api/ws-tickets", HTTP_AUTHORIZATION=f"Bearer {auth['token']}")
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


async def test_a_ticket_connection_lapses_with_the_token_the_ticket_was_asked_with(settings) -> None:  # type: ignore[no-untyped-def]
    settings.HUB_JWT_LEEWAY_S = 0
    user = await create_user()
    ticket = await sync_to_async(ticket_with)(token=token_for(user, ttl_s=2))
    long_ticket = await sync_to_async(ticket_with)(token=token_for(user, ttl_s=600))
    async with ws_connect(path=f"/ws/?ticket={ticket}") as client, ws_connect(path=f"/ws/?ticket={long_ticket}") as long:  # noqa: E501
        how, after = await closed_within(client, 5)
        assert how == "closed 4401" and after < 2.5
        assert "pong" in await long.request("ping")


async def test_a_ticket_asked_for_with_a_session_lapses_with_the_session() -> None:
    user = await create_user()
    ticket = await sync_to_async(ticket_with)(user=user, session_expiry_s=2)
    async with ws_connect(path=f"/ws/?ticket={ticket}") as client:
        how, after = await closed_within(client, 5)
        assert how == "closed 4401" and after < 2.5


async def test_a_ticket_cannot_be_given_a_later_expiry() -> None:
    user = await create_user()
    ticket = await sync_to_async(ticket_with)(token=token_for(user, ttl_s=60))
    random_part, _, until = ticket.partition(".")
    assert int(until) > time.time()
    forged = f"{random_part}.{int(until) + 86_400}"
    assert await close_code([], path=f"/ws/?ticket={forged}") == 4401
    assert await close_code([], path=f"/ws/?ticket={random_part}") == 4401


async def test_a_session_cookie_connection_lapses_with_the_session() -> None:
    user = await create_user()

    def login_cookie() -> str:
        client = Client()
        client.force_login(user)
        session = client.session
        session.set_expiry(2)
        session.save()
        return f"sessionid={client.cookies['sessionid'].value}"

    cookie = await sync_to_async(login_cookie)()
    async with ws_connect(headers=[(b"cookie", cookie.encode())]) as client:
        how, after = await closed_within(client, 5)
        assert how == "closed 4401" and after < 2.5


async def test_one_timer_serves_idle_and_lapsing_connections(settings) -> None:  # type: ignore[no-untyped-def]
    settings.HUB_JWT_LEEWAY_S = 0
    settings.HUB_WS_IDLE_TIMEOUT_S = 1.5
    user = await create_user()
    async with ws_connect(token=token_for(user, ttl_s=600)) as silent, ws_connect(token=token_for(user, ttl_s=1)) as lapsing:  # noqa: E501
        sweeper = idle_sweeper()
        timers = [h for h in asyncio.get_running_loop()._scheduled if h._callback == sweeper._fire]  # type: ignore[attr-defined]
        assert len(timers) == 1
        how, _ = await closed_within(lapsing, 3)
        assert how == "closed 4401"
        how, _ = await closed_within(silent, 3)
        assert how == "closed 4408"
