"""Attachments: upload limits, storage, and an authorised download (never a public URL)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from config import settings as config_settings
from hub.models import Attachment
from hub.services.messages import message_send
from tests.conftest import auth_headers
from tests.factories import CustomerFactory, booking_with_conversation

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_storage(settings: Any, tmp_path: Path) -> Path:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    return tmp_path


def upload(client: Client, user: Any, name: str, content: bytes, content_type: str) -> Any:
    return client.post(
        "/api/attachments", {"file": SimpleUploadedFile(name, content, content_type)}, **auth_headers(user)
    )


def test_upload_send_and_fetch_by_members_only(client: Client, tmp_path: Path) -> None:
    booking, conversation = booking_with_conversation()
    customer, provider = booking.customer, booking.provider.user
    response = upload(client, customer, "../../photo one.png", b"\x89PNG fake", "image/png")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "photo_one.png" and body["content_type"] == "image/png" and body["size"] == 9
    assert body["url"] == f"/api/attachments/{body['id']}"
    stored = Attachment.objects.get(id=body["id"])
    assert (tmp_path / stored.file.name).read_bytes() == b"\x89PNG fake"
    assert stored.file.name.startswith(f"attachments/{customer.id}/{stored.id}/")

    # Before it is sent, only the uploader may fetch it.
    assert client.get(body["url"], **auth_headers(provider)).status_code == 403
    mine = client.get(body["url"], **auth_headers(customer))
    assert mine.status_code == 200 and b"".join(mine.streaming_content) == b"\x89PNG fake"
    assert mine["Content-Type"] == "image/png" and mine["X-Content-Type-Options"] == "nosniff"

    message_send(
        sender=customer,
        conversation_id=conversation.id,
        client_id="a",
        body="",
        attachment_ids=[uuid.UUID(body["id"])],
    )
    fetched = client.get(body["url"], **auth_headers(provider))
    assert fetched.status_code == 200 and b"".join(fetched.streaming_content) == b"\x89PNG fake"
    assert client.get(body["url"], **auth_headers(CustomerFactory())).status_code == 403
    assert client.get(body["url"]).status_code == 401
    assert client.get(f"/api/attachments/{uuid.uuid4()}", **auth_headers(customer)).status_code == 404


def test_non_images_download_as_attachments(client: Client) -> None:
    user = CustomerFactory()
    body = upload(client, user, "notes.pdf", b"%PDF-1.4", "application/pdf").json()
    response = client.get(body["url"], **auth_headers(user))
    assert response["Content-Disposition"].startswith("attachment;")


def test_type_and_size_limits(client: Client, settings: Any) -> None:
    user = CustomerFactory()
    refused = upload(client, user, "page.html", b"<script>", "text/html")
    assert refused.status_code == 400 and refused.json()["code"] == "bad_request"
    assert upload(client, user, "x.svg", b"<svg/>", "image/svg+xml").status_code == 400
    assert upload(client, user, "empty.png", b"", "image/png").status_code == 400
    settings.HUB_ATTACHMENT_MAX_BYTES = 10
    too_big = upload(client, user, "big.png", b"x" * 11, "image/png")
    assert too_big.status_code == 413 and too_big.json()["code"] == "too_large"
    settings.HUB_ATTACHMENT_TYPES = ["image/png"]
    assert upload(client, user, "ok.png", b"x" * 10, "image/png").status_code == 201
    assert upload(client, user, "doc.pdf", b"%PDF", "application/pdf").status_code == 400
    missing = client.post("/api/attachments", {}, **auth_headers(user))
    assert missing.status_code == 400
    assert Attachment.objects.count() == 1


def test_storage_is_configurable_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_settings._storages("local")["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    monkeypatch.setenv("AWS_STORAGE_BUCKET_NAME", "hub-attachments")
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    s3 = config_settings._storages("s3")["default"]
    assert s3["BACKEND"] == "storages.backends.s3.S3Storage"
    options = s3["OPTIONS"]
    assert isinstance(options, dict)
    assert options["bucket_name"] == "hub-attachments" and options["default_acl"] == "private"
    assert options["querystring_auth"] is True
    with pytest.raises(ValueError):
        config_settings._storages("ftp")


def test_s3_storage_hands_members_a_short_lived_signed_url(client: Client, settings: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "hub-attachments",
                "endpoint_url": "http://127.0.0.1:9",
                "region_name": "us-east-1",
                "access_key": "test-key",
                "secret_key": "test-secret",
                "default_acl": "private",
                "querystring_auth": True,
                "querystring_expire": 120,
                "signature_version": "s3v4",
            },
        },
    }
    user = CustomerFactory()
    attachment = Attachment.objects.create(
        uploader=user, file=f"attachments/{user.id}/x/a.png", name="a.png", content_type="image/png", size=3
    )
    response = client.get(f"/api/attachments/{attachment.id}", **auth_headers(user))
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("http://127.0.0.1:9/hub-attachments/attachments/")
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=120" in location
    assert client.get(f"/api/attachments/{attachment.id}", **auth_headers(CustomerFactory())).status_code == 403
