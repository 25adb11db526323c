"""Routes of the HTTP API under /api/; each feature module adds its own paths here."""

from django.urls import path

from hub.api.bookings import BookingStatusView, BookingView
from hub.api.tickets import WsTicketView

urlpatterns = [
    path("ws-tickets", WsTicketView.as_view(), name="ws-tickets"),
    path("bookings/<str:booking_id>", BookingView.as_view(), name="booking"),
    path("bookings/<str:booking_id>/status", BookingStatusView.as_view(), name="booking-status"),
]
