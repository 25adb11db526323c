"""Bookings over HTTP (PROTOCOL §2.2, §3): read one, move its status. Same services as the WebSocket."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub import serialize
from hub.models import BookingStatus
from hub.services.bookings import REASON_MAX_CHARS, booking_detail, booking_set_status

_ERROR = inline_serializer("Error", {"code": serializers.CharField(), "message": serializers.CharField()})

BookingOut = inline_serializer(
    "Booking",
    {
        "id": serializers.UUIDField(),
        "customer_id": serializers.UUIDField(),
        "provider_id": serializers.UUIDField(),
        "service_id": serializers.UUIDField(allow_null=True),
        "status": serializers.ChoiceField(choices=BookingStatus.values),
        "scheduled_at": serializers.DateTimeField(),
        "duration_minutes": serializers.IntegerField(),
        "location": serializers.JSONField(),
        "notes": serializers.CharField(),
        "pricing": serializers.JSONField(),
        "conversation_id": serializers.UUIDField(allow_null=True),
        "live_location": inline_serializer(
            "LiveLocation",
            {
                "lat": serializers.FloatField(),
                "lng": serializers.FloatField(),
                "accuracy_m": serializers.FloatField(allow_null=True),
                "at": serializers.DateTimeField(),
            },
            allow_null=True,
            help_text="The provider's last fix while the booking is en_route; null otherwise.",
        ),
    },
)


class BookingStatusIn(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=BookingStatus.values)
    reason = serializers.CharField(
        max_length=REASON_MAX_CHARS, required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )


class BookingView(APIView):
    @extend_schema(
        responses={
            200: BookingOut,
            404: OpenApiResponse(_ERROR, description="No such booking, or not yours"),
        },
        summary="A booking, for its customer, its provider and admins",
    )
    def get(self, request: Request, booking_id: str) -> Response:
        booking = booking_detail(user=request.user, booking_id=booking_id)  # type: ignore[arg-type]
        return Response(serialize.booking(booking))


class BookingStatusView(APIView):
    @extend_schema(
        request=BookingStatusIn,
        responses={
            200: BookingOut,
            400: OpenApiResponse(_ERROR, description="Unknown status or invalid reason"),
            403: OpenApiResponse(_ERROR, description="A listed move, but not yours to make"),
            404: OpenApiResponse(_ERROR, description="No such booking, or not yours"),
            409: OpenApiResponse(_ERROR, description="A move not in the table from the current status"),
        },
        summary="Move a booking's status (same rules and effects as the WebSocket `booking.status`)",
    )
    def post(self, request: Request, booking_id: str) -> Response:
        body = BookingStatusIn(data=request.data)
        body.is_valid(raise_exception=True)
        booking = booking_set_status(
            actor=request.user,  # type: ignore[arg-type]
            booking_id=booking_id,
            status=body.validated_data["status"],
            reason=body.validated_data.get("reason"),
            source="http",
        )
        return Response(serialize.booking(booking))
