"""Every request type's handler module; importing this package registers them all."""

from consumers.handlers import basic, bookings, conversations  # noqa: F401
