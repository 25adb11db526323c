"""Attachments: uploads with type and size limits, claimed by a message, served to members only."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.text import get_valid_filename

from hub.errors import BadRequest, NotFound, PermissionDenied, TooLarge
from hub.models import Attachment, ConversationMember, Message, MessageKind, User

MAX_PER_MESSAGE = 10


def _clean_name(name: str) -> str:
    base = os.path.basename(name or "").strip()
    try:
        cleaned = get_valid_filename(base)
    except Exception:  # Django raises SuspiciousFileOperation for names like ".." or ""
        cleaned = "file"
    stem, ext = os.path.splitext(cleaned)
    return (stem[: 120 - len(ext[:20])] + ext[:20]) or "file"


def attachment_upload(*, user: User, file: UploadedFile) -> Attachment:
    """Store an upload for `user`; it stays theirs until a message of theirs claims it."""
    if file.size is None or file.size > settings.HUB_ATTACHMENT_MAX_BYTES:
        raise TooLarge(
            f"Attachments may be at most {settings.HUB_ATTACHMENT_MAX_BYTES} bytes.",
            max_bytes=settings.HUB_ATTACHMENT_MAX_BYTES,
        )
    if file.size == 0:
        raise BadRequest("The file is empty.")
    content_type = (file.content_type or "").split(";")[0].strip().lower()
    if content_type not in settings.HUB_ATTACHMENT_TYPES:
        raise BadRequest(
            f"Content type {content_type or 'unknown'!r} is not allowed.",
            allowed_types=list(settings.HUB_ATTACHMENT_TYPES),
        )
    name = _clean_name(file.name or "file")
    attachment = Attachment(uploader=user, name=name, content_type=content_type, size=file.size)
    # The storage names the object attachments/<uploader>/<attachment id>/<name> (hub.models.attachment_path).
    attachment.file.save(name, file, save=False)
    try:
        attachment.save()
    except Exception:
        attachment.file.storage.delete(str(attachment.file.name))
        raise
    return attachment


def access_attachment(*, user: User, attachment_id: uuid.UUID) -> Attachment:
    """An attachment the user may fetch: theirs while unattached, else if they are in its conversation."""
    attachment = Attachment.objects.select_related("message").filter(id=attachment_id).first()
    if attachment is None:
        raise NotFound("No such attachment.")
    if attachment.message_id is None:
        if attachment.uploader_id != user.id:
            raise PermissionDenied("Not your attachment.")
        return attachment
    assert attachment.message is not None
    if attachment.message.deleted_at is not None:
        raise NotFound("No such attachment.")
    if not ConversationMember.objects.filter(
        conversation_id=attachment.message.conversation_id, user_id=user.id
    ).exists():
        raise PermissionDenied("Only the conversation's members may fetch this attachment.")
    return attachment


def attachments_claimable(*, user: User, attachment_ids: Sequence[uuid.UUID]) -> list[Attachment]:
    """Lock the uploader's unattached attachments named by `attachment_ids` (in the caller's transaction)."""
    assert transaction.get_connection().in_atomic_block
    ids = list(dict.fromkeys(attachment_ids))
    if len(ids) > MAX_PER_MESSAGE:
        raise BadRequest(f"At most {MAX_PER_MESSAGE} attachments per message.")
    found = {
        a.id: a
        for a in Attachment.objects.select_for_update().filter(id__in=ids, uploader_id=user.id, message__isnull=True)
    }
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise BadRequest("Unknown, foreign or already used attachments.", attachment_ids=missing)
    return [found[i] for i in ids]


def attachments_claim(*, message: Message, attachments: list[Attachment]) -> None:
    Attachment.objects.filter(id__in=[a.id for a in attachments]).update(message=message)
    for a in attachments:
        a.message = message


def kind_for(attachments: list[Attachment]) -> str:
    """`image` when every attachment is an image, `file` otherwise (`text` without any)."""
    if not attachments:
        return MessageKind.TEXT
    if all(a.content_type.startswith("image/") for a in attachments):
        return MessageKind.IMAGE
    return MessageKind.FILE


def attachments_drop(*, attachments: list[Attachment]) -> None:
    """Delete rows now and the stored files once the transaction commits."""
    if not attachments:
        return
    names = [(a.file.storage, a.file.name) for a in attachments if a.file.name]
    Attachment.objects.filter(id__in=[a.id for a in attachments]).delete()

    def _remove() -> None:
        for storage, name in names:
            storage.delete(name)

    transaction.on_commit(_remove, robust=True)
