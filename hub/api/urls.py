"""Routes of the HTTP API under /api/; each feature module adds its own paths here."""

from django.urls import path

from hub.api import conversations as conv
from hub.api.asyncapi import AsyncAPIView
from hub.api.bookings import BookingStatusView, BookingView
from hub.api.tickets import WsTicketView

urlpatterns = [
    path("asyncapi.json", AsyncAPIView.as_view(), name="asyncapi"),
    path("ws-tickets", WsTicketView.as_view(), name="ws-tickets"),
    path("conversations", conv.ConversationsView.as_view(), name="conversations"),
    path("conversations/<uuid:conversation_id>", conv.ConversationDetailView.as_view(), name="conversation"),
    path("conversations/<uuid:conversation_id>/messages", conv.MessagesView.as_view(), name="messages"),
    path("conversations/<uuid:conversation_id>/read", conv.ReadView.as_view(), name="conversation-read"),
    path(
        "conversations/<uuid:conversation_id>/delivered",
        conv.DeliveredView.as_view(),
        name="conversation-delivered",
    ),
    path("messages/<uuid:message_id>", conv.MessageDetailView.as_view(), name="message"),
    path("attachments", conv.AttachmentsView.as_view(), name="attachments"),
    path("attachments/<uuid:attachment_id>", conv.AttachmentDetailView.as_view(), name="attachment"),
    path("blocks", conv.BlocksView.as_view(), name="blocks"),
    path("blocks/<uuid:user_id>", conv.BlockDetailView.as_view(), name="block"),
    path("bookings/<uuid:booking_id>", BookingView.as_view(), name="booking"),
    path("bookings/<uuid:booking_id>/status", BookingStatusView.as_view(), name="booking-status"),
]
