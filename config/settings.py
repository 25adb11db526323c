"""Django settings for Loconomy Hub; every value comes from the environment (see .env.example)."""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = BASE_DIR / ".run"

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Development values of the secrets, and .env.example's placeholders: with DEBUG off, the hub refuses
# to start while any is in use (PROTOCOL §0), since anyone could mint tokens or sign events with them.
DEV_SECRET = "dev-only-insecure-secret-change-me"
DEV_JWT_SECRET = "dev-only-hub-jwt-secret-change-me-0123456789"
DEV_EVENTS_SECRET = "whsec_ZGV2LW9ubHktaHViLWV2ZW50cy1zZWNyZXQ="
NOT_SECRETS = {"", "change-me", "whsec_change-me", DEV_SECRET, DEV_JWT_SECRET, DEV_EVENTS_SECRET}

DEBUG = env.bool("DJANGO_DEBUG", default=False)


def _secret(variable: str, dev_value: str) -> str:
    """A secret from the environment; its development value only with DEBUG on (ImproperlyConfigured otherwise)."""
    value = env.str(variable, default="")
    if value.strip() not in NOT_SECRETS:
        return value
    if DEBUG:
        return dev_value
    raise ImproperlyConfigured(
        f"{variable} is unset or a development value, and DJANGO_DEBUG is off: set it to a real secret."
    )


SECRET_KEY = _secret("DJANGO_SECRET_KEY", DEV_SECRET)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
PORT = env.int("PORT", default=8000)
HUB_PUBLIC_URL = env.str("HUB_PUBLIC_URL", default=f"http://127.0.0.1:{PORT}")
# Origins a browser WebSocket may come from. Entries with a scheme match exactly; bare host names
# match that host on any scheme and port. Default: the allowed hosts, any port.
HUB_ALLOWED_ORIGINS = env.list("HUB_ALLOWED_ORIGINS", default=ALLOWED_HOSTS)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "hub",
    "consumers",
    "notifications",
    "webrtc",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{RUN_DIR / 'hub.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite is the embedded dev database: wait for the writer lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    # No `SELECT 1` before each unit of work: it doubled the round trips of a chat message. A broken
    # connection fails one request and is then replaced (Django closes connections after errors).
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", env.bool("DATABASE_CONN_HEALTH_CHECKS", default=False))

AUTH_USER_MODEL = "hub.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = RUN_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("HUB_MEDIA_ROOT", default=str(RUN_DIR / "media"))

# Attachments go through Django's storage API: local files under HUB_MEDIA_ROOT by default, or S3
# (django-storages) with HUB_STORAGE=s3. Nothing is ever served from a public media URL: clients
# fetch /api/attachments/{id}, which checks membership (ADR 0013).
HUB_STORAGE = env.str("HUB_STORAGE", default="local")


def _storages(kind: str) -> dict[str, dict[str, object]]:
    if kind == "local":
        default: dict[str, object] = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": None},
        }
    elif kind == "s3":
        default = {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": env.str("AWS_STORAGE_BUCKET_NAME"),
                "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
                "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
                "access_key": env.str("AWS_ACCESS_KEY_ID", default="") or None,
                "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default="") or None,
                "location": env.str("AWS_LOCATION", default=""),
                # Private objects; the hub hands members short-lived signed URLs only.
                "default_acl": "private",
                "querystring_auth": True,
                "querystring_expire": env.int("AWS_QUERYSTRING_EXPIRE", default=300),
                "signature_version": env.str("AWS_S3_SIGNATURE_VERSION", default="s3v4"),
                "file_overwrite": False,
            },
        }
    else:
        raise ValueError(f"HUB_STORAGE must be 'local' or 's3', not {kind!r}")
    return {
        "default": default,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


STORAGES = _storages(HUB_STORAGE)
HUB_ATTACHMENT_MAX_BYTES = env.int("HUB_ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024)
# An empty value (as in .env.example) means the default list, not "nothing allowed".
HUB_ATTACHMENT_TYPES = env.list("HUB_ATTACHMENT_TYPES", default=[]) or [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heic",
    "application/pdf",
    "text/plain",
    "audio/mpeg",
    "audio/mp4",
    "audio/ogg",
    "video/mp4",
    "video/quicktime",
]

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "hub",
    }
}

# Events are published to Redis channels and routed by each web process (hub/realtime.py,
# consumers/router.py; ADRs 0035, 0050): no channel layer on the hub's path. A handshake waits at
# most this long for its user's subscription (Redis slow: `hello` now, `resync` later); a silent
# subscription connection is pinged after this long, and given up after twice that.
HUB_WS_SUBSCRIBE_WAIT_S = env.float("HUB_WS_SUBSCRIBE_WAIT_S", default=2.0)
HUB_ROUTER_PING_S = env.float("HUB_ROUTER_PING_S", default=5.0)

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"

# Identity (PROTOCOL §1)
HUB_JWT_PUBLIC_KEY = env.str("HUB_JWT_PUBLIC_KEY", default="")
# With a public key, tokens are verified with it alone; the secret still signs dev and demo tokens.
HUB_JWT_SECRET = env.str("HUB_JWT_SECRET", default=DEV_JWT_SECRET) if HUB_JWT_PUBLIC_KEY else _secret(
    "HUB_JWT_SECRET", DEV_JWT_SECRET
)
HUB_JWT_LEEWAY_S = env.int("HUB_JWT_LEEWAY_S", default=30)
HUB_WS_TICKET_TTL_S = env.int("HUB_WS_TICKET_TTL_S", default=30)
HUB_EVENTS_SECRET = _secret("HUB_EVENTS_SECRET", DEV_EVENTS_SECRET)

# WebSocket (PROTOCOL §2)
HUB_WS_MAX_FRAME_BYTES = env.int("HUB_WS_MAX_FRAME_BYTES", default=64 * 1024)
HUB_WS_IDLE_TIMEOUT_S = env.float("HUB_WS_IDLE_TIMEOUT_S", default=90.0)
HUB_WS_HEARTBEAT_S = env.int("HUB_WS_HEARTBEAT_S", default=30)

# Conversations (PROTOCOL §2.1)
HUB_MESSAGE_MAX_CHARS = env.int("HUB_MESSAGE_MAX_CHARS", default=4000)
# Per-user token bucket for message sends, shared by every web process through Redis.
HUB_SEND_RATE_BURST = env.int("HUB_SEND_RATE_BURST", default=20)
HUB_SEND_RATE_PER_S = env.float("HUB_SEND_RATE_PER_S", default=10.0)
# Sends on one connection made while told to wait (rate_limited), in a row, before close 4429.
HUB_SEND_FLOOD_CLOSE_AFTER = env.int("HUB_SEND_FLOOD_CLOSE_AFTER", default=10)
# Group commit (ADR 0036): most sends stored per transaction, and sends waiting per process
# before `message.send` is answered `busy`.
HUB_SEND_BATCH_MAX = env.int("HUB_SEND_BATCH_MAX", default=200)
HUB_SEND_QUEUE_MAX = env.int("HUB_SEND_QUEUE_MAX", default=1000)
# An event loop running this late (a backlog of frames and events) answers sends `busy`.
HUB_SEND_MAX_LAG_MS = env.int("HUB_SEND_MAX_LAG_MS", default=100)
HUB_TYPING_EXPIRES_S = env.int("HUB_TYPING_EXPIRES_S", default=8)
# A connection's presence entry in Redis lives this long unless its process refreshes it.
HUB_PRESENCE_TTL_S = env.int("HUB_PRESENCE_TTL_S", default=60)
# Round-trip every published event through JSON and validate it at the call (the tests turn it on).
HUB_EVENTS_VALIDATE = env.bool("HUB_EVENTS_VALIDATE", default=False)

# Live booking status (PROTOCOL §2.2): at most one live-location fix per booking per interval.
HUB_BOOKING_LOCATION_INTERVAL_MS = env.int("HUB_BOOKING_LOCATION_INTERVAL_MS", default=1000)

# Calls (PROTOCOL §2.3)
HUB_CALL_RING_S = env.int("HUB_CALL_RING_S", default=45)
HUB_CALL_REJOIN_S = env.int("HUB_CALL_REJOIN_S", default=30)
HUB_TURN_TTL_S = env.int("HUB_TURN_TTL_S", default=3600)
TURN_URLS = env.list("TURN_URLS", default=[])
TURN_SECRET = env.str("TURN_SECRET", default="")
STUN_URLS = env.list("STUN_URLS", default=[])

# Notification providers (PROTOCOL §5)
SENDGRID_API_KEY = env.str("SENDGRID_API_KEY", default="")
SENDGRID_API_HOST = env.str("SENDGRID_API_HOST", default="https://api.sendgrid.com")
HUB_EMAIL_FROM = env.str("HUB_EMAIL_FROM", default="Loconomy <no-reply@loconomy.test>")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="https://api.twilio.com")
VAPID_PRIVATE_KEY = env.str("VAPID_PRIVATE_KEY", default="")
VAPID_PUBLIC_KEY = env.str("VAPID_PUBLIC_KEY", default="")
VAPID_SUBJECT = env.str("VAPID_SUBJECT", default="mailto:ops@loconomy.test")
HUB_UNREAD_EMAIL_DELAY_S = env.int("HUB_UNREAD_EMAIL_DELAY_S", default=900)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hub.api.authentication.BearerJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "hub.api.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hub.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Loconomy Hub API",
    "DESCRIPTION": "HTTP side of the Loconomy real-time hub. The WebSocket protocol is in docs/protocol.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # The server's access log has a line for every request: django.request's own line for each 4xx/5xx
    # repeated it. It keeps its errors (an exception's traceback, once; ADR 0043).
    "loggers": {
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
    },
}
