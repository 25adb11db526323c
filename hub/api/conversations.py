"""HTTP side of conversations (PROTOCOL §2.1, §3): the same services as the WebSocket requests."""

from __future__ import annotations

import base64
import uuid
from typing import Any, cast

from django.conf import settings
from django.http import FileResponse, HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub import serialize
from hub.errors import BadRequest, TooLarge
from hub.models import User
from hub.services import attachments as att_services
from hub.services import conversations as conv_services
from hub.services import messages as msg_services

# --- shapes (for validation and the OpenAPI document) -------------------------------------------

UserOut = inline_serializer(
    "UserPublic",
    {"id": serializers.UUIDField(), "display_name": serializers.CharField(), "role": serializers.CharField()},
)
AttachmentOut = inline_serializer(
    "Attachment",
    {
        "id": serializers.UUIDField(),
        "url": serializers.CharField(),
        "name": serializers.CharField(),
        "content_type": serializers.CharField(),
        "size": serializers.IntegerField(),
    },
)
MessageOut = inline_serializer(
    "Message",
    {
        "id": serializers.UUIDField(),
        "conversation_id": serializers.UUIDField(),
        "seq": serializers.IntegerField(),
        "version": serializers.IntegerField(help_text="the conversation's version at this message's latest change"),
        "sender_id": serializers.UUIDField(allow_null=True),
        "client_id": serializers.CharField(allow_null=True),
        "kind": serializers.ChoiceField(["text", "image", "file", "system", "call"]),
        "body": serializers.CharField(),
        "data": serializers.DictField(),
        "attachments": AttachmentOut.__class__(many=True),
        "created_at": serializers.DateTimeField(),
        "edited_at": serializers.DateTimeField(allow_null=True),
        "deleted": serializers.BooleanField(),
    },
)
ConversationOut = inline_serializer(
    "Conversation",
    {
        "id": serializers.UUIDField(),
        "kind": serializers.ChoiceField(["direct", "booking"]),
        "booking_id": serializers.UUIDField(allow_null=True),
        "members": UserOut.__class__(many=True),
        "last_seq": serializers.IntegerField(),
        "version": serializers.IntegerField(help_text="the conversation's current version (PROTOCOL §2.1)"),
        "last_message": MessageOut.__class__(allow_null=True),
        "last_message_at": serializers.DateTimeField(allow_null=True),
        "read_seq": serializers.IntegerField(),
        "delivered_seq": serializers.IntegerField(),
        "unread_count": serializers.IntegerField(),
        "created_at": serializers.DateTimeField(),
    },
)


def _page(name: str, item: Any, **extra: serializers.Field) -> Any:
    return inline_serializer(
        name, {"results": item.__class__(many=True), "next": serializers.CharField(allow_null=True), **extra}
    )


class OpenIn(serializers.Serializer):
    participant_id = serializers.UUIDField()
    booking_id = serializers.UUIDField(required=False, allow_null=True)


class SendIn(serializers.Serializer):
    client_id = serializers.CharField(required=False, min_length=1, max_length=64, trim_whitespace=False)
    body = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=64 * 1024)
    attachment_ids = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=10)


class EditIn(serializers.Serializer):
    body = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=64 * 1024)


class SeqIn(serializers.Serializer):
    seq = serializers.IntegerField(min_value=0)


class BlockIn(serializers.Serializer):
    user_id = serializers.UUIDField()


def me(request: Request) -> User:
    """The authenticated user (every view here requires authentication)."""
    return cast(User, request.user)


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    s = serializer_class(data=data)
    s.is_valid(raise_exception=True)
    return dict(s.validated_data)


def _int_param(request: Request, name: str, *, minimum: int = 0) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"`{name}` must be an integer.") from exc
    if not minimum <= value <= msg_services.COUNTER_MAX:
        raise BadRequest(f"`{name}` must be from {minimum} to {msg_services.COUNTER_MAX}.")
    return value


# --- conversations ------------------------------------------------------------------------------


class ConversationsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("cursor", str, description="`next` of the previous page"),
            OpenApiParameter("limit", int, description="1-100, default 50"),
        ],
        responses={200: _page("ConversationPage", ConversationOut, unread_total=serializers.IntegerField())},
        operation_id="conversations_list",
        summary="My conversations, most recently active first, with unread counts and last message",
    )
    def get(self, request: Request) -> Response:
        limit = min(_int_param(request, "limit", minimum=1) or 50, 100)
        views, next_cursor = conv_services.conversation_list(
            user=me(request),
            cursor=request.query_params.get("cursor") or None,
            limit=limit,
        )
        return Response(
            {
                "results": [serialize.conversation(v) for v in views],
                "next": next_cursor,
                "unread_total": conv_services.unread_total(user=me(request)),
            }
        )

    @extend_schema(
        request=OpenIn,
        responses={200: ConversationOut, 201: ConversationOut},
        summary="Get or create THE conversation with a participant (or for a booking)",
    )
    def post(self, request: Request) -> Response:
        data = _valid(OpenIn, request.data)
        conversation, created = conv_services.conversation_open(
            user=me(request),
            participant_id=data["participant_id"],
            booking_id=data.get("booking_id"),
        )
        # An admin may open a booking's conversation without being one of its members.
        membership = conversation.memberships.filter(user_id=me(request).pk).first()
        if membership is None:
            view = conv_services.ConversationView(
                conversation=conversation,
                membership=conv_services.ConversationMember(conversation=conversation),
                members=[m.user for m in conversation.memberships.select_related("user")],
                last_message=None,
                unread_count=0,
            )
        else:
            membership.conversation = conversation
            view = conv_services.conversation_views(user=me(request), memberships=[membership])[0]
        return Response(serialize.conversation(view), status=201 if created else 200)


class ConversationDetailView(APIView):
    @extend_schema(
        responses={200: ConversationOut},
        summary="One conversation of mine",
        operation_id="conversation_retrieve",
    )
    def get(self, request: Request, conversation_id: uuid.UUID) -> Response:
        view = conv_services.conversation_view(user=me(request), conversation_id=conversation_id)
        return Response(serialize.conversation(view))


def _history_cursor(direction: str, seq: int, bound: int | None) -> str:
    raw = f"{direction}:{seq}:{'' if bound is None else bound}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _read_history_cursor(cursor: str) -> tuple[int | None, int | None]:
    """(before, after) from a `next` cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        direction, seq, bound = raw.split(":")
        value, limit = int(seq), (int(bound) if bound else None)
    except ValueError as exc:
        raise BadRequest("Invalid cursor.") from exc
    if not all(0 <= v <= msg_services.COUNTER_MAX for v in (value, limit or 0)):
        raise BadRequest("Invalid cursor.")
    if direction == "b":
        return value, None
    if direction == "a":
        return limit, value
    raise BadRequest("Invalid cursor.")


class MessagesView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("before", int, description="only messages with seq < before (newest of them)"),
            OpenApiParameter("after", int, description="only messages with seq > after (oldest of them)"),
            OpenApiParameter("limit", int, description="1-200, default 50"),
            OpenApiParameter("cursor", str, description="`next` of the previous page"),
        ],
        responses={200: _page("MessagePage", MessageOut)},
        summary="History, oldest first: the newest page by default, `before` to go back, `after` to catch up",
    )
    def get(self, request: Request, conversation_id: uuid.UUID) -> Response:
        before = _int_param(request, "before")
        after = _int_param(request, "after")
        cursor = request.query_params.get("cursor")
        if cursor:
            before, after = _read_history_cursor(cursor)
        limit = _int_param(request, "limit", minimum=1) or msg_services.HISTORY_DEFAULT_LIMIT
        limit = min(limit, msg_services.HISTORY_MAX_LIMIT)
        page, more = msg_services.message_history(
            user=me(request),
            conversation_id=conversation_id,
            before=before,
            after=after,
            limit=limit,
        )
        next_cursor = None
        if more and page:
            if after is not None:
                next_cursor = _history_cursor("a", page[-1]["seq"], before)
            else:
                next_cursor = _history_cursor("b", page[0]["seq"], None)
        return Response({"results": page, "next": next_cursor})

    @extend_schema(
        request=SendIn,
        responses={200: MessageOut, 201: MessageOut},
        summary="Send a message (as `message.send`); 200 with the first message for a repeated client_id, "
        "409 for a client_id already used in another conversation",
    )
    def post(self, request: Request, conversation_id: uuid.UUID) -> Response:
        data = _valid(SendIn, request.data)
        sent = msg_services.message_send(
            sender=me(request),
            conversation_id=conversation_id,
            client_id=data.get("client_id") or str(uuid.uuid4()),
            body=data.get("body", ""),
            attachment_ids=data.get("attachment_ids") or (),
        )
        return Response(sent.data, status=201 if sent.created else 200)


_RECEIPT_OUT = inline_serializer(
    "ReadReceipt",
    {
        "conversation_id": serializers.UUIDField(),
        "read_seq": serializers.IntegerField(),
        "unread_count": serializers.IntegerField(),
    },
)


class ReadView(APIView):
    @extend_schema(request=SeqIn, responses={200: _RECEIPT_OUT}, summary="Read up to and including seq")
    def post(self, request: Request, conversation_id: uuid.UUID) -> Response:
        data = _valid(SeqIn, request.data)
        result = conv_services.conversation_read(
            user=me(request),
            conversation_id=conversation_id,
            seq=data["seq"],
        )
        return Response(
            {
                "conversation_id": str(conversation_id),
                "read_seq": result.read_seq,
                "unread_count": result.unread_count,
            }
        )


class DeliveredView(APIView):
    @extend_schema(
        request=SeqIn,
        responses={
            200: inline_serializer(
                "DeliveredReceipt",
                {"conversation_id": serializers.UUIDField(), "delivered_seq": serializers.IntegerField()},
            )
        },
        summary="Delivered up to and including seq",
    )
    def post(self, request: Request, conversation_id: uuid.UUID) -> Response:
        data = _valid(SeqIn, request.data)
        result = conv_services.conversation_delivered(
            user=me(request),
            conversation_id=conversation_id,
            seq=data["seq"],
        )
        return Response({"conversation_id": str(conversation_id), "delivered_seq": result.delivered_seq})


class MessageDetailView(APIView):
    @extend_schema(request=EditIn, responses={200: MessageOut}, summary="Edit my message (as `message.edit`)")
    def patch(self, request: Request, message_id: uuid.UUID) -> Response:
        data = _valid(EditIn, request.data)
        sent = msg_services.message_edit(user=me(request), message_id=message_id, body=data["body"])
        return Response(sent.data)

    @extend_schema(request=None, responses={200: MessageOut}, summary="Delete my message (as `message.delete`)")
    def delete(self, request: Request, message_id: uuid.UUID) -> Response:
        sent = msg_services.message_delete(user=me(request), message_id=message_id)
        return Response(sent.data)


# --- attachments --------------------------------------------------------------------------------


class AttachmentsView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        responses={201: AttachmentOut},
        summary="Upload a file (field `file`); then name it in message.send `attachment_ids`",
    )
    def post(self, request: Request) -> Response:
        # Refuse an oversize body before reading it (the multipart envelope adds a little).
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.HUB_ATTACHMENT_MAX_BYTES + 64 * 1024:
            raise TooLarge(
                f"Attachments may be at most {settings.HUB_ATTACHMENT_MAX_BYTES} bytes.",
                max_bytes=settings.HUB_ATTACHMENT_MAX_BYTES,
            )
        upload = request.FILES.get("file")
        if upload is None:
            raise BadRequest("Send the file as multipart/form-data field `file`.")
        attachment = att_services.attachment_upload(user=me(request), file=upload)
        return Response(serialize.attachment(attachment), status=201)


class AttachmentDetailView(APIView):
    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 302: None},
        summary="The file, for members of its conversation (or its uploader before it is sent)",
    )
    def get(self, request: Request, attachment_id: uuid.UUID) -> Any:
        attachment = att_services.access_attachment(user=me(request), attachment_id=attachment_id)
        storage = attachment.file.storage
        inline = attachment.content_type.startswith("image/")
        if getattr(storage, "querystring_auth", False):
            # S3: a short-lived signed URL to the private object, handed to an authorised member only.
            response: Any = HttpResponseRedirect(storage.url(str(attachment.file.name)))
        else:
            response = FileResponse(
                storage.open(str(attachment.file.name), "rb"),
                content_type=attachment.content_type,
                as_attachment=not inline,
                filename=attachment.name,
            )
        response["Cache-Control"] = "private, max-age=300"
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response


# --- blocks -------------------------------------------------------------------------------------

BlockOut = inline_serializer("Block", {"user": UserOut, "created_at": serializers.DateTimeField()})


class BlocksView(APIView):
    @extend_schema(responses={200: _page("BlockPage", BlockOut)}, summary="Users I have blocked")
    def get(self, request: Request) -> Response:
        blocks = conv_services.block_list(user=me(request))
        return Response({"results": [serialize.block(b) for b in blocks], "next": None})

    @extend_schema(
        request=BlockIn,
        responses={200: BlockOut, 201: BlockOut},
        summary="Block a user: nothing of theirs reaches me, and messages between us are refused",
    )
    def post(self, request: Request) -> Response:
        data = _valid(BlockIn, request.data)
        block, created = conv_services.block_create(user=me(request), user_id=data["user_id"])
        return Response(serialize.block(block), status=201 if created else 200)


class BlockDetailView(APIView):
    @extend_schema(request=None, responses={204: None}, summary="Unblock a user")
    def delete(self, request: Request, user_id: uuid.UUID) -> Response:
        conv_services.block_delete(user=me(request), user_id=user_id)
        return Response(status=204)
