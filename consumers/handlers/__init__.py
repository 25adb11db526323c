"""Every request type's handler module; importing this package registers them all."""

from consumers.handlers import (
    basic,  # noqa: F401
    conversations,  # noqa: F401
)
