"""HTTP side of conversations (PROTOCOL §2.1, §3): open rules, lists, history, sends, reads, blocks."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from django.test import Client

from hub.models import Block, Conversation, ConversationMember, Message
from hub.services.conversations import pair_key
from hub.services.messages import message_send
from tests.conftest import auth_headers
from tests.factories import (
    AdminFactory,
    BookingFactory,
    CustomerFactory,
    ProviderFactory,
    booking_with_conversation,
)

pytestmark = pytest.mark.django_db


def post(client: Client, user: Any, path: str, data: dict[str, Any]) -> Any:
    return client.post(path, data, content_type="application/json", **auth_headers(user))


def get(client: Client, user: Any, path: str, **params: Any) -> Any:
    return client.get(path, params, **auth_headers(user))


def say(user: Any, conversation: Any, body: str = "hi") -> Message:
    return message_send(sender=user, conversation_id=conversation.id, client_id=str(uuid.uuid4()), body=body).message


# --- opening: the authorisation matrix ----------------------------------------------------------


def test_customer_and_provider_get_the_one_direct_conversation(client: Client) -> None:
    customer, provider = CustomerFactory(), ProviderFactory().user
    first = post(client, customer, "/api/conversations", {"participant_id": str(provider.id)})
    assert first.status_code == 201
    body = first.json()
    assert body["kind"] == "direct" and body["booking_id"] is None
    assert {m["id"] for m in body["members"]} == {str(customer.id), str(provider.id)}
    assert body["unread_count"] == 0 and body["last_message"] is None and body["last_seq"] == 0
    again = post(client, provider, "/api/conversations", {"participant_id": str(customer.id)})
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert Conversation.objects.get().pair_key == pair_key(customer.id, provider.id)


@pytest.mark.parametrize(
    ("opener", "participant", "status"),
    [
        ("customer", "customer", 403),
        ("provider", "provider", 403),
        ("admin", "customer", 201),
        ("customer", "admin", 201),
        ("admin", "provider", 201),
        ("customer", "self", 400),
        ("customer", "unknown", 404),
        ("customer", "inactive", 404),
    ],
)
def test_direct_conversation_rules(client: Client, opener: str, participant: str, status: int) -> None:
    make = {
        "customer": lambda: CustomerFactory(),
        "provider": lambda: ProviderFactory().user,
        "admin": lambda: AdminFactory(),
    }
    user = make[opener]()
    if participant == "self":
        target = str(user.id)
    elif participant == "unknown":
        target = str(uuid.uuid4())
    elif participant == "inactive":
        target = str(ProviderFactory(user__is_active=False).user.id)
    else:
        target = str(make[participant]().id)
    response = post(client, user, "/api/conversations", {"participant_id": target})
    assert response.status_code == status, response.json()
    if status == 403:
        assert response.json()["code"] == "forbidden"
        assert not Conversation.objects.exists()


def test_booking_conversation_rules(client: Client) -> None:
    booking = BookingFactory()
    customer, provider = booking.customer, booking.provider.user
    response = post(
        client,
        customer,
        "/api/conversations",
        {"participant_id": str(provider.id), "booking_id": str(booking.id)},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["kind"] == "booking" and body["booking_id"] == str(booking.id)
    again = post(
        client,
        provider,
        "/api/conversations",
        {"participant_id": str(customer.id), "booking_id": str(booking.id)},
    )
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    # Admins may open it (without becoming a member); strangers may not; the participant must be a party.
    admin = AdminFactory()
    response = post(
        client,
        admin,
        "/api/conversations",
        {"participant_id": str(customer.id), "booking_id": str(booking.id)},
    )
    assert response.status_code == 200 and response.json()["id"] == body["id"]
    assert not ConversationMember.objects.filter(user=admin).exists()
    stranger = CustomerFactory()
    response = post(
        client,
        stranger,
        "/api/conversations",
        {"participant_id": str(provider.id), "booking_id": str(booking.id)},
    )
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    response = post(
        client,
        customer,
        "/api/conversations",
        {"participant_id": str(stranger.id), "booking_id": str(booking.id)},
    )
    assert response.status_code == 400
    response = post(
        client,
        customer,
        "/api/conversations",
        {"participant_id": str(provider.id), "booking_id": str(uuid.uuid4())},
    )
    assert response.status_code == 404


def test_open_validation_and_auth(client: Client) -> None:
    user = CustomerFactory()
    response = post(client, user, "/api/conversations", {"participant_id": "nope"})
    assert response.status_code == 400 and response.json()["code"] == "bad_request"
    response = client.post("/api/conversations", {}, content_type="application/json")
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


# --- listing -------------------------------------------------------------------------------------


def test_list_with_unread_counts_last_message_and_cursor(client: Client) -> None:
    customer = CustomerFactory()
    conversations = []
    for _ in range(3):
        booking, conversation = booking_with_conversation(customer=customer)
        conversations.append((booking.provider.user, conversation))
    (p0, c0), (p1, c1), (p2, c2) = conversations
    say(p0, c0, "old")
    say(p2, c2, "a")
    say(p2, c2, "b")
    mine = say(customer, c2, "mine")  # not unread for me
    say(p1, c1, "newest")

    page = get(client, customer, "/api/conversations", limit=2).json()
    assert [c["id"] for c in page["results"]] == [str(c1.id), str(c2.id)]
    assert page["unread_total"] == 4
    first = page["results"][1]
    assert first["unread_count"] == 2 and first["last_message"]["id"] == str(mine.id) and first["last_seq"] == 3
    assert {m["id"] for m in first["members"]} == {str(customer.id), str(p2.id)}
    assert page["next"]
    rest = get(client, customer, "/api/conversations", limit=2, cursor=page["next"]).json()
    assert [c["id"] for c in rest["results"]] == [str(c0.id)] and rest["next"] is None
    assert get(client, customer, "/api/conversations", cursor="garbage!").status_code == 400

    detail = get(client, customer, f"/api/conversations/{c2.id}").json()
    assert detail["unread_count"] == 2
    assert get(client, p0, f"/api/conversations/{c2.id}").status_code == 403
    assert get(client, p0, f"/api/conversations/{uuid.uuid4()}").status_code == 404


def test_list_is_a_fixed_number_of_queries(client: Client, django_assert_max_num_queries: Any) -> None:
    customer = CustomerFactory()
    for _ in range(10):
        booking, conversation = booking_with_conversation(customer=customer)
        say(booking.provider.user, conversation)
    headers = auth_headers(customer)
    # auth (1) + page (1) + members (1) + last messages (1) + their attachments (1) + unread (1) + total (1)
    with django_assert_max_num_queries(8):
        assert len(client.get("/api/conversations", **headers).json()["results"]) == 10


# --- messages ------------------------------------------------------------------------------------


def test_send_history_and_read_over_http(client: Client) -> None:
    booking, conversation = booking_with_conversation()
    customer, provider = booking.customer, booking.provider.user
    path = f"/api/conversations/{conversation.id}/messages"
    response = post(client, customer, path, {"client_id": "k1", "body": "hello"})
    assert response.status_code == 201
    message = response.json()
    assert message["seq"] == 1 and message["client_id"] == "k1" and message["body"] == "hello"
    repeat = post(client, customer, path, {"client_id": "k1", "body": "hello again"})
    assert repeat.status_code == 200 and repeat.json() == message
    assert post(client, customer, path, {"body": "no client id: still fine"}).status_code == 201
    assert post(client, customer, path, {"client_id": "k2", "body": "  "}).status_code == 400
    stranger = CustomerFactory()
    assert post(client, stranger, path, {"client_id": "k3", "body": "x"}).status_code == 403
    missing = post(client, customer, f"/api/conversations/{uuid.uuid4()}/messages", {"client_id": "k4", "body": "x"})
    assert missing.status_code == 404
    for i in range(8):
        say(provider, conversation, f"p{i}")  # seqs 3..10

    newest = get(client, customer, path, limit=4).json()
    assert [m["seq"] for m in newest["results"]] == [7, 8, 9, 10] and newest["next"]
    older = get(client, customer, path, limit=4, cursor=newest["next"]).json()
    assert [m["seq"] for m in older["results"]] == [3, 4, 5, 6]
    oldest = get(client, customer, path, limit=4, cursor=older["next"]).json()
    assert [m["seq"] for m in oldest["results"]] == [1, 2] and oldest["next"] is None
    after = get(client, customer, path, after=2, limit=3).json()
    assert [m["seq"] for m in after["results"]] == [3, 4, 5]
    following = get(client, customer, path, cursor=after["next"], limit=3).json()
    assert [m["seq"] for m in following["results"]] == [6, 7, 8]
    window = get(client, customer, path, after=2, before=6).json()
    assert [m["seq"] for m in window["results"]] == [3, 4, 5] and window["next"] is None
    assert get(client, customer, path, before=3).json()["results"][0] == message
    assert get(client, customer, path, limit="x").status_code == 400
    assert get(client, customer, path, after=-1).status_code == 400
    assert get(client, stranger, path).status_code == 403

    read = post(client, customer, f"/api/conversations/{conversation.id}/read", {"seq": 5})
    assert read.json() == {"conversation_id": str(conversation.id), "read_seq": 5, "unread_count": 5}
    read = post(client, customer, f"/api/conversations/{conversation.id}/read", {"seq": 2})
    assert read.json()["read_seq"] == 5
    assert post(client, customer, f"/api/conversations/{conversation.id}/read", {"seq": -3}).status_code == 400
    assert post(client, stranger, f"/api/conversations/{conversation.id}/read", {"seq": 1}).status_code == 403
    delivered = post(client, provider, f"/api/conversations/{conversation.id}/delivered", {"seq": 1000})
    assert delivered.json() == {"conversation_id": str(conversation.id), "delivered_seq": 10}


def test_edit_and_delete_over_http(client: Client) -> None:
    booking, conversation = booking_with_conversation()
    message = say(booking.customer, conversation, "first")
    path = f"/api/messages/{message.id}"
    other = client.patch(path, {"body": "x"}, content_type="application/json", **auth_headers(booking.provider.user))
    assert other.status_code == 403
    edited = client.patch(path, {"body": "second"}, content_type="application/json", **auth_headers(booking.customer))
    assert edited.status_code == 200 and edited.json()["body"] == "second" and edited.json()["edited_at"]
    deleted = client.delete(path, **auth_headers(booking.customer))
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True


def test_rate_limited_send_is_429_with_retry_after(client: Client, settings: Any) -> None:
    settings.HUB_SEND_RATE_BURST = 1
    settings.HUB_SEND_RATE_PER_S = 0.5
    booking, conversation = booking_with_conversation()
    path = f"/api/conversations/{conversation.id}/messages"
    assert post(client, booking.customer, path, {"body": "1"}).status_code == 201
    response = post(client, booking.customer, path, {"body": "2"})
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited" and 0 < response.json()["retry_after_s"] <= 2
    assert response["Retry-After"] == "2"


# --- blocks --------------------------------------------------------------------------------------


def test_blocks_crud(client: Client) -> None:
    booking, conversation = booking_with_conversation()
    customer, provider = booking.customer, booking.provider.user
    created = post(client, customer, "/api/blocks", {"user_id": str(provider.id)})
    assert created.status_code == 201 and created.json()["user"]["id"] == str(provider.id)
    assert post(client, customer, "/api/blocks", {"user_id": str(provider.id)}).status_code == 200
    assert post(client, customer, "/api/blocks", {"user_id": str(customer.id)}).status_code == 400
    assert post(client, customer, "/api/blocks", {"user_id": str(uuid.uuid4())}).status_code == 404
    listed = get(client, customer, "/api/blocks").json()
    assert [b["user"]["id"] for b in listed["results"]] == [str(provider.id)] and listed["next"] is None
    path = f"/api/conversations/{conversation.id}/messages"
    refused = post(client, provider, path, {"body": "let me in"})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert post(client, customer, path, {"body": "me neither"}).status_code == 403
    assert client.delete(f"/api/blocks/{provider.id}", **auth_headers(customer)).status_code == 204
    assert client.delete(f"/api/blocks/{provider.id}", **auth_headers(customer)).status_code == 404
    assert not Block.objects.exists()
    assert post(client, provider, path, {"body": "thanks"}).status_code == 201


def test_schema_documents_the_endpoints(client: Client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in (
        "/api/conversations",
        "/api/conversations/{conversation_id}/messages",
        "/api/conversations/{conversation_id}/read",
        "/api/attachments",
        "/api/attachments/{attachment_id}",
        "/api/blocks",
        "/api/blocks/{user_id}",
    ):
        assert path in schema["paths"], path


def test_versions_over_http_and_a_client_id_of_another_conversation_is_409(client: Client, settings: Any) -> None:
    booking, conversation = booking_with_conversation()
    _, other = booking_with_conversation(customer=booking.customer)
    me = booking.customer
    sent = post(client, me, f"/api/conversations/{conversation.id}/messages", {"client_id": "k", "body": "one"})
    assert (sent.status_code, sent.json()["seq"], sent.json()["version"]) == (201, 1, 1)
    edited = client.patch(
        f"/api/messages/{sent.json()['id']}", {"body": "two"}, content_type="application/json", **auth_headers(me)
    )
    assert edited.json()["version"] == 2
    [entry] = [c for c in get(client, me, "/api/conversations").json()["results"] if c["id"] == str(conversation.id)]
    assert (entry["last_seq"], entry["version"]) == (1, 2)
    reused = post(client, me, f"/api/conversations/{other.id}/messages", {"client_id": "k", "body": "elsewhere"})
    assert (reused.status_code, reused.json()["code"]) == (409, "conflict")
    assert not Message.objects.filter(conversation=other).exists()


def test_history_bounds_out_of_range_are_400_not_500(client: Client) -> None:
    booking, conversation = booking_with_conversation()
    me = booking.customer
    huge = str(2**70)
    cursor = base64.urlsafe_b64encode(f"b:{huge}:".encode()).decode().rstrip("=")
    for params in ({"before": huge}, {"after": huge}, {"cursor": cursor}):
        response = get(client, me, f"/api/conversations/{conversation.id}/messages", **params)
        assert (response.status_code, response.json()["code"]) == (400, "bad_request"), params
