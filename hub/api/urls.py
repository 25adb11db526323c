"""Routes of the HTTP API under /api/; each feature module adds its own paths here."""

from django.urls import path

from hub.api.tickets import WsTicketView

urlpatterns = [
    path("ws-tickets", WsTicketView.as_view(), name="ws-tickets"),
]
