"""Parley settings, read from the environment (django-environ).

Without DATABASE_URL / REDIS_URL Parley runs on embedded defaults: SQLite, the in-memory
channel layer, the local-memory cache and eager Celery. The code paths are the same either
way; only the backends change. Every Parley limit is a ``PARLEY_*`` setting that the
environment variable of the same name overrides.
"""
import sys
from pathlib import Path

import environ
import redis
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue
from redis.driver_info import DriverInfo

from ops.checks import PUBLISHED_SECRET_KEY
from ops.logs import configure_logging

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Without DJANGO_SECRET_KEY: the development key, published here; `check --deploy` refuses it
# with an Error (ops.checks), so production must set its own.
SECRET_KEY = env("DJANGO_SECRET_KEY", default=PUBLISHED_SECRET_KEY)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "messaging.admin_site.ParleyAdminConfig",  # django.contrib.admin, users under Authentication
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "messaging",
    "receipts",
    "notifications",
    "ops",
]

MIDDLEWARE = [
    "ops.middleware.request_id_middleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatproject.urls"
ASGI_APPLICATION = "chatproject.asgi.application"
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

# --- Storage -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# PostgreSQL connections are pooled per process (psycopg_pool through Django's "pool" option;
# DESIGN 13, docs/operations.md "Database connections"). Daphne runs each HTTP request's sync
# code on a thread of its own, and the gateway its database work on PARLEY_GATEWAY_DB_THREADS
# threads: with a connection per thread, a burst of requests opens a connection per request
# in flight (and with DJANGO_CONN_MAX_AGE keeps each one until its thread is collected), so
# PostgreSQL refuses the rest. With the pool every thread borrows one of at most
# PARLEY_DB_POOL_MAX_SIZE connections and gives it back when its request or call ends;
# beyond that, work waits up to PARLEY_DB_POOL_TIMEOUT_SECONDS for a free one.
PARLEY_DB_POOL = env.bool("PARLEY_DB_POOL", default=True) and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
# Kept open while idle. 1: Celery's prefork children close and reopen their pool around every
# task, so each opens this many connections per task.
PARLEY_DB_POOL_MIN_SIZE = env.int("PARLEY_DB_POOL_MIN_SIZE", default=1)
PARLEY_DB_POOL_MAX_SIZE = env.int("PARLEY_DB_POOL_MAX_SIZE", default=20)  # per process, never more
PARLEY_DB_POOL_TIMEOUT_SECONDS = env.float("PARLEY_DB_POOL_TIMEOUT_SECONDS", default=30.0)
PARLEY_DB_POOL_MAX_IDLE_SECONDS = env.float("PARLEY_DB_POOL_MAX_IDLE_SECONDS", default=300.0)
if PARLEY_DB_POOL:
    if env.int("DJANGO_CONN_MAX_AGE", default=0):
        raise ImproperlyConfigured(
            "DJANGO_CONN_MAX_AGE keeps a connection per thread, which the connection pool replaces "
            "(Django refuses both at once): unset it, or set PARLEY_DB_POOL=0 to go without the pool.")
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The pool checks a connection before lending it, so a PostgreSQL restart costs no request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": PARLEY_DB_POOL_MIN_SIZE,
        "max_size": PARLEY_DB_POOL_MAX_SIZE,
        "timeout": PARLEY_DB_POOL_TIMEOUT_SECONDS,
        "max_idle": PARLEY_DB_POOL_MAX_IDLE_SECONDS,
        "name": "parley",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DJANGO_CONN_MAX_AGE", default=0))
# A send's two statements are prepared on their connection (messaging.rows.prepared_cursor):
# PostgreSQL parses and plans them once per connection, not per send (0.4 ms less of its time
# a send, issue 15); the pool keeps the connections. psycopg prepares what asks and, with this
# threshold, nothing else: Django's queries keep their client-side binding and custom plans.
# Turn this off behind a PgBouncer in transaction mode that cannot keep prepared statements
# (before 1.21, or without max_prepared_statements).
PARLEY_DB_PREPARED_STATEMENTS = (env.bool("PARLEY_DB_PREPARED_STATEMENTS", default=True)
                                 and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql")
if PARLEY_DB_PREPARED_STATEMENTS:
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = sys.maxsize
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The dev server runs sends from several threads; wait for the write lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DATABASES["default"].setdefault("TEST", {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
# Several Redis servers may carry the channel layer (channels-redis shards by channel name).
CHANNEL_REDIS_URLS = env.list("CHANNEL_REDIS_URLS", default=[REDIS_URL] if REDIS_URL else [])

# redis-py reads its own package metadata (files, an email-format parse) for every new
# connection unless told its name and version: milliseconds each time a pool grows, which a
# reconnect storm's database threads all do at once.
REDIS_CLIENT_INFO = {"driver_info": DriverInfo(lib_version=redis.__version__)}

if CHANNEL_REDIS_URLS:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis with fewer round trips (chatproject/layers.py); the stock class
            # (channels_redis.core.RedisChannelLayer) stores and reads the same keys.
            "BACKEND": env("PARLEY_CHANNEL_LAYER_BACKEND", default="chatproject.layers.RedisChannelLayer"),
            "CONFIG": {
                "hosts": [{"address": url, "socket_timeout": None, **REDIS_CLIENT_INFO} for url in CHANNEL_REDIS_URLS],
                "capacity": env.int("PARLEY_CHANNEL_CAPACITY", default=1000),
                "expiry": 60,
                "group_expiry": 86400,
                "prefix": env("PARLEY_CHANNEL_PREFIX", default="parley"),
            },
        }
    }
    CACHES = {
        "default": {
            # Django's, reusing its redis-py clients (chatproject/cache.py).
            "BACKEND": "chatproject.cache.RedisCache",
            "LOCATION": REDIS_URL or CHANNEL_REDIS_URLS[0],
            "OPTIONS": REDIS_CLIENT_INFO,
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
# No broker configured: run tasks in-process, so the embedded defaults need no worker.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not (REDIS_URL or env("CELERY_BROKER_URL", default="")))
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_TASK_TRACK_STARTED = False
CELERY_WORKER_SEND_TASK_EVENTS = False
# Separate queues keep message delivery ahead of receipts, pushes and bulk work. A plain
# `celery -A chatproject worker` consumes every queue listed here, so no work is orphaned;
# with the Redis broker the "priority" order strategy polls them in this order.
CELERY_TASK_QUEUES = [Queue(name) for name in ("messages", "receipts", "push", "bulk")]
CELERY_TASK_DEFAULT_QUEUE = "bulk"
CELERY_TASK_ROUTES = {
    "parley.fanout.*": {"queue": "messages"},
    "parley.receipts.*": {"queue": "receipts"},
    "parley.push.*": {"queue": "push"},
    "parley.bulk.*": {"queue": "bulk"},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {"queue_order_strategy": "priority", "visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE: dict = {}

# --- Auth, REST, schema ----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTH_USER_MODEL = "messaging.User"
LOGIN_URL = "/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PARSER_CLASSES": ["api.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Parley API",
    "DESCRIPTION": "REST interface of Parley. The WebSocket protocol is described in docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Fields named alike with different choices get names of their own.
    "ENUM_NAME_OVERRIDES": {
        "ConversationKindEnum": "messaging.models.Conversation.Kind",
        "MessageStateEnum": "messaging.models.Message.State",
        "ChangeKindEnum": "messaging.models.MessageChange.Kind",
        "RecipientStateEnum": ["sent", "delivered", "read"],
        "ModerationActionEnum": "messaging.models.ModerationDecision.Action",
        "ResolutionEnum": "messaging.moderation.RESOLUTIONS",
        "RoleEnum": "messaging.models.Membership.Role",
        "AssignableRoleEnum": ["admin", "member"],
        "NotifyEnum": "messaging.models.Membership.Notify",
        "ConversationActionEnum": "messaging.roles.Action",
    },
}

# --- Locale, static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Uploads and attachments (messaging/attachments.py; docs/operations.md, "Files") -----------
# Where uploaded files live: Django's storage API under the alias "attachments". By default the
# local file system under MEDIA_ROOT; PARLEY_FILE_STORAGE=s3 switches to any S3-compatible store
# through django-storages (`pip install -e '.[s3]'`, which brings boto3; nothing needs it otherwise).
MEDIA_ROOT = Path(env("PARLEY_MEDIA_ROOT", default=str(BASE_DIR / "media")))
PARLEY_FILE_STORAGE = env("PARLEY_FILE_STORAGE", default="filesystem")
if PARLEY_FILE_STORAGE == "filesystem":
    _attachment_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # No base_url: files are never served as static media, only by the view that checks
        # membership (api/uploads.py).
        "OPTIONS": {"location": MEDIA_ROOT, "file_permissions_mode": 0o640, "directory_permissions_mode": 0o750},
    }
elif PARLEY_FILE_STORAGE == "s3":
    _attachment_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("PARLEY_S3_BUCKET", default=""),
            "endpoint_url": env("PARLEY_S3_ENDPOINT_URL", default="") or None,  # MinIO, R2, Ceph ...
            "region_name": env("PARLEY_S3_REGION", default="") or None,
            "access_key": env("PARLEY_S3_ACCESS_KEY_ID", default="") or None,  # else boto3's own chain
            "secret_key": env("PARLEY_S3_SECRET_ACCESS_KEY", default="") or None,
            "location": env("PARLEY_S3_PREFIX", default="attachments"),
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    raise ImproperlyConfigured(f"PARLEY_FILE_STORAGE is 'filesystem' or 's3', not {PARLEY_FILE_STORAGE!r}")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": _attachment_storage,
}
# How a file's body leaves once the view has checked membership: "django" streams it from the
# storage; "x-accel-redirect" (nginx) or "x-sendfile" (Apache mod_xsendfile, lighttpd) hands
# the file-system path to the front server (docs/operations.md has the nginx snippet).
PARLEY_FILE_SERVE = env("PARLEY_FILE_SERVE", default="django")
if PARLEY_FILE_SERVE not in ("django", "x-accel-redirect", "x-sendfile"):
    raise ImproperlyConfigured("PARLEY_FILE_SERVE is one of django, x-accel-redirect, x-sendfile")
# nginx's internal location that maps to MEDIA_ROOT (with x-accel-redirect).
PARLEY_FILE_ACCEL_PREFIX = env("PARLEY_FILE_ACCEL_PREFIX", default="/_parley_files/")
PARLEY_UPLOAD_MAX_BYTES = env.int("PARLEY_UPLOAD_MAX_BYTES", default=25 * 1024 * 1024)  # larger: 413
# What may be uploaded, by the type detected from the content ("type/*" allows a family). Others: 400.
PARLEY_UPLOAD_ALLOWED_TYPES = env.list("PARLEY_UPLOAD_ALLOWED_TYPES", default=[
    "image/png", "image/jpeg", "image/gif", "image/webp",
    "application/pdf", "text/plain", "text/csv", "application/json", "application/zip",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
    "audio/mpeg", "audio/ogg", "audio/x-wav", "audio/wav", "audio/webm",
    "video/mp4", "video/webm", "video/quicktime",
])
# Images: at most this many pixels are decoded (Pillow's MAX_IMAGE_PIXELS; a larger image, a
# decompression bomb among them, is a 400), and thumbnails fit in this square.
PARLEY_UPLOAD_MAX_IMAGE_PIXELS = env.int("PARLEY_UPLOAD_MAX_IMAGE_PIXELS", default=50_000_000)
PARLEY_UPLOAD_THUMBNAIL_SIZE = env.int("PARLEY_UPLOAD_THUMBNAIL_SIZE", default=480)
# Per user: uploads per period, and the bytes one user may keep stored (0: no quota).
PARLEY_RATE_UPLOAD = env("PARLEY_RATE_UPLOAD", default="30/m")
PARLEY_UPLOAD_QUOTA_BYTES = env.int("PARLEY_UPLOAD_QUOTA_BYTES", default=2 * 1024 * 1024 * 1024)
PARLEY_MAX_ATTACHMENTS_PER_MESSAGE = env.int("PARLEY_MAX_ATTACHMENTS_PER_MESSAGE", default=10)
# An upload no send attached within this long is deleted by the beat sweep, which runs this often.
PARLEY_UPLOAD_ORPHAN_SECONDS = env.int("PARLEY_UPLOAD_ORPHAN_SECONDS", default=24 * 3600)
PARLEY_UPLOAD_SWEEP_INTERVAL_SECONDS = env.float("PARLEY_UPLOAD_SWEEP_INTERVAL_SECONDS", default=3600.0)
CELERY_BEAT_SCHEDULE["parley.bulk.sweep_uploads"] = {
    "task": "parley.bulk.sweep_uploads",
    "schedule": PARLEY_UPLOAD_SWEEP_INTERVAL_SECONDS,
}

# --- Production hardening (enabled by DJANGO_SECURE=1, behind a TLS-terminating proxy) --------
if env.bool("DJANGO_SECURE", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Probes and scrapers inside the network speak plain HTTP to the process itself.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# Structured logs through structlog (ops.logs): PARLEY_LOG_FORMAT is console (key=value) or json.
LOGGING = configure_logging(level=env("DJANGO_LOG_LEVEL", default="INFO"),
                            fmt=env("PARLEY_LOG_FORMAT", default="console"))

# --- Parley limits and policy (each overridable by the environment variable of that name) ----
PARLEY_MAX_BODY_LENGTH = env.int("PARLEY_MAX_BODY_LENGTH", default=4000)
# REST request bodies (api.parsers): larger is a 413, nested deeper a 400.
PARLEY_MAX_REQUEST_BYTES = env.int("PARLEY_MAX_REQUEST_BYTES", default=64 * 1024)
PARLEY_JSON_MAX_DEPTH = env.int("PARLEY_JSON_MAX_DEPTH", default=20)
PARLEY_MAX_CLIENT_MSG_ID_LENGTH = 64
PARLEY_PAGE_SIZE_DEFAULT = env.int("PARLEY_PAGE_SIZE_DEFAULT", default=50)
PARLEY_PAGE_SIZE_MAX = env.int("PARLEY_PAGE_SIZE_MAX", default=200)
PARLEY_REPLAY_PAGE_SIZE = env.int("PARLEY_REPLAY_PAGE_SIZE", default=200)
PARLEY_CONVERSATIONS_PAGE_SIZE = env.int("PARLEY_CONVERSATIONS_PAGE_SIZE", default=50)
PARLEY_MAX_TITLE_LENGTH = env.int("PARLEY_MAX_TITLE_LENGTH", default=200)
PARLEY_MAX_MEMBERS_PER_REQUEST = env.int("PARLEY_MAX_MEMBERS_PER_REQUEST", default=100)
PARLEY_MAX_DEVICES_PER_USER = env.int("PARLEY_MAX_DEVICES_PER_USER", default=20)
PARLEY_OPEN_SIGNUP = env.bool("PARLEY_OPEN_SIGNUP", default=True)
PARLEY_USER_SEARCH_LIMIT = env.int("PARLEY_USER_SEARCH_LIMIT", default=20)
# Edits, replies, reactions and mentions (CONTRACT v1.1; messaging.changes, reactions, mentions).
PARLEY_EDIT_WINDOW_SECONDS = env.int("PARLEY_EDIT_WINDOW_SECONDS", default=86400)  # 0: no limit
PARLEY_MAX_REACTIONS_PER_MESSAGE = env.int("PARLEY_MAX_REACTIONS_PER_MESSAGE", default=20)  # distinct emoji
PARLEY_REACTION_USERS_SHOWN = env.int("PARLEY_REACTION_USERS_SHOWN", default=50)  # user ids per emoji
PARLEY_MENTION_ALL_MAX_MEMBERS = env.int("PARLEY_MENTION_ALL_MAX_MEMBERS", default=100)
PARLEY_REPLY_EXCERPT_CHARS = env.int("PARLEY_REPLY_EXCERPT_CHARS", default=100)
# Search (messaging.search): results per page, the longest query, words in a highlight.
PARLEY_SEARCH_PAGE_SIZE_DEFAULT = env.int("PARLEY_SEARCH_PAGE_SIZE_DEFAULT", default=20)
PARLEY_SEARCH_PAGE_SIZE_MAX = env.int("PARLEY_SEARCH_PAGE_SIZE_MAX", default=50)
PARLEY_SEARCH_MAX_QUERY_LENGTH = env.int("PARLEY_SEARCH_MAX_QUERY_LENGTH", default=200)
PARLEY_SEARCH_HEADLINE_MAX_WORDS = env.int("PARLEY_SEARCH_HEADLINE_MAX_WORDS", default=24)
# From this many messages a conversation is planned on its own in a search (messaging.search).
PARLEY_SEARCH_LARGE_CONVERSATION_MESSAGES = env.int("PARLEY_SEARCH_LARGE_CONVERSATION_MESSAGES", default=5000)
# Conversations: the longest topic (the model allows 1000).
PARLEY_MAX_TOPIC_LENGTH = env.int("PARLEY_MAX_TOPIC_LENGTH", default=500)
# Rate limits (messaging.ratelimit; the table is in docs/security.md), "<count>/<period>"
# with period s|m|h|d and an optional multiplier: "30/s", "10/m", "1/2s".
PARLEY_RATE_SEND = env("PARLEY_RATE_SEND", default="30/s")  # new messages per user
PARLEY_RATE_LOGIN = env("PARLEY_RATE_LOGIN", default="10/m")  # per address, and per username
PARLEY_RATE_SIGNUP = env("PARLEY_RATE_SIGNUP", default="20/h")  # per address
PARLEY_RATE_WS_TICKET = env("PARLEY_RATE_WS_TICKET", default="60/m")  # per user
PARLEY_RATE_TYPING = env("PARLEY_RATE_TYPING", default="1/2s")  # per user and conversation
PARLEY_RATE_CHANGE = env("PARLEY_RATE_CHANGE", default="10/s")  # edits, deletes and reactions per user
PARLEY_RATE_SEARCH = env("PARLEY_RATE_SEARCH", default="5/s")  # message searches per user
# Per WebSocket connection, counted in the gateway process (messaging.ratelimit.RetryRule):
# frames of any kind but acks; the hard cap, far above it, past which frames are abuse; and the
# abusive frames (those past the hard cap, or back before the retry_after_ms they were told)
# beyond which the socket closes with 4429. Refusals alone never close a socket.
PARLEY_RATE_WS_FRAMES = env("PARLEY_RATE_WS_FRAMES", default="50/s")
PARLEY_RATE_WS_HARD_CAP = env("PARLEY_RATE_WS_HARD_CAP", default="500/s")
PARLEY_RATE_WS_ABUSE = env("PARLEY_RATE_WS_ABUSE", default="20/10s")
# Moderators and staff pass the per-user limits (sends, slow mode, tickets, typing).
PARLEY_RATE_LIMIT_EXEMPT_MODERATORS = env.bool("PARLEY_RATE_LIMIT_EXEMPT_MODERATORS", default=True)
# Proxies in front of Parley that append to X-Forwarded-For: per-address limits trust only
# the entries they wrote. 0: the peer address (REMOTE_ADDR) is the client.
PARLEY_TRUSTED_PROXIES = env.int("PARLEY_TRUSTED_PROXIES", default=0)
# Moderation: the longest slow mode a moderator may set.
PARLEY_SLOW_MODE_MAX_SECONDS = env.int("PARLEY_SLOW_MODE_MAX_SECONDS", default=6 * 3600)
# The moderators' pages: how often the top bar's count of open flags is refreshed, and how many
# messages before and after a flagged one its card shows.
PARLEY_MODERATION_REFRESH_SECONDS = env.int("PARLEY_MODERATION_REFRESH_SECONDS", default=60)
PARLEY_MODERATION_CONTEXT_MESSAGES = env.int("PARLEY_MODERATION_CONTEXT_MESSAGES", default=3)
# Fan-out policy: conversations with at least this many members use buffered fan-out.
PARLEY_LARGE_CHANNEL_THRESHOLD = env.int("PARLEY_LARGE_CHANNEL_THRESHOLD", default=100)
PARLEY_BATCH_WINDOW_MS = env.int("PARLEY_BATCH_WINDOW_MS", default=100)
# Receipts: broadcast to members only below this member count; coalescing window.
PARLEY_RECEIPT_BROADCAST_MAX_MEMBERS = env.int("PARLEY_RECEIPT_BROADCAST_MAX_MEMBERS", default=100)
PARLEY_RECEIPT_COALESCE_MS = env.int("PARLEY_RECEIPT_COALESCE_MS", default=500)
# How long a publish to the channel layer may wait before the doorbell is given up (logged;
# gap fill, the tail check and replay repair it): a send never hangs on an unanswering Redis.
PARLEY_PUBLISH_TIMEOUT_SECONDS = env.float("PARLEY_PUBLISH_TIMEOUT_SECONDS", default=2.0)
# WebSocket.
PARLEY_WS_TICKET_TTL_SECONDS = env.int("PARLEY_WS_TICKET_TTL_SECONDS", default=60)
PARLEY_WS_MAX_FRAME_BYTES = env.int("PARLEY_WS_MAX_FRAME_BYTES", default=64 * 1024)
PARLEY_ACK_FLUSH_MS = env.int("PARLEY_ACK_FLUSH_MS", default=250)
PARLEY_TYPING_THROTTLE_MS = env.int("PARLEY_TYPING_THROTTLE_MS", default=2000)
PARLEY_GATEWAY_TAIL_CHECK_SECONDS = env.float("PARLEY_GATEWAY_TAIL_CHECK_SECONDS", default=3.0)
PARLEY_GATEWAY_GROUP_REFRESH_SECONDS = env.float("PARLEY_GATEWAY_GROUP_REFRESH_SECONDS", default=3600.0)
PARLEY_WS_MAX_BAD_FRAMES = env.int("PARLEY_WS_MAX_BAD_FRAMES", default=20)
PARLEY_WS_BAD_FRAME_WINDOW_SECONDS = env.float("PARLEY_WS_BAD_FRAME_WINDOW_SECONDS", default=10.0)
PARLEY_PRESENCE_MAX_CONVERSATIONS = env.int("PARLEY_PRESENCE_MAX_CONVERSATIONS", default=50)
PARLEY_PRESENCE_REFRESH_SECONDS = env.float("PARLEY_PRESENCE_REFRESH_SECONDS", default=60.0)
# How long the cache remembers when a user was last online (shown as "last seen"; never stored).
PARLEY_PRESENCE_LAST_SEEN_SECONDS = env.int("PARLEY_PRESENCE_LAST_SEEN_SECONDS", default=30 * 24 * 3600)

# --- Offline path: Web Push (docs/notifications.md) ---------------------------------------------
# VAPID keys from `manage.py vapid_keys`. Without a private key, a pair is generated once and
# stored in the database (notifications.vapid), unless PARLEY_VAPID_AUTOGENERATE is off: then
# Parley sends no pushes at all. The public key is derived from the private one if not given.
PARLEY_VAPID_PUBLIC_KEY = env("PARLEY_VAPID_PUBLIC_KEY", default="")
PARLEY_VAPID_PRIVATE_KEY = env("PARLEY_VAPID_PRIVATE_KEY", default="")
PARLEY_VAPID_AUTOGENERATE = env.bool("PARLEY_VAPID_AUTOGENERATE", default=True)
PARLEY_VAPID_SUBJECT = env("PARLEY_VAPID_SUBJECT", default="mailto:admin@localhost")
# Messages of one conversation within this window make one notification per offline member.
PARLEY_PUSH_BURST_SECONDS = env.float("PARLEY_PUSH_BURST_SECONDS", default=5.0)
# Retries of a failing push: exponential backoff from the base, with jitter, capped.
PARLEY_PUSH_MAX_RETRIES = env.int("PARLEY_PUSH_MAX_RETRIES", default=5)
PARLEY_PUSH_BACKOFF_BASE_SECONDS = env.float("PARLEY_PUSH_BACKOFF_BASE_SECONDS", default=2.0)
PARLEY_PUSH_BACKOFF_MAX_SECONDS = env.float("PARLEY_PUSH_BACKOFF_MAX_SECONDS", default=300.0)
# Nothing older than this is pushed by the sweep or a late task (no storm after an outage).
PARLEY_PUSH_STALE_AFTER_SECONDS = env.int("PARLEY_PUSH_STALE_AFTER_SECONDS", default=900)
PARLEY_PUSH_SWEEP_INTERVAL_SECONDS = env.float("PARLEY_PUSH_SWEEP_INTERVAL_SECONDS", default=60.0)
# How long the push service keeps a notification for a device that is off (the TTL header).
PARLEY_PUSH_TTL_SECONDS = env.int("PARLEY_PUSH_TTL_SECONDS", default=86400)
# How long after a push reading elsewhere still sends the "close" follow-up.
PARLEY_PUSH_CLOSE_WINDOW_SECONDS = env.int("PARLEY_PUSH_CLOSE_WINDOW_SECONDS", default=7 * 86400)
# One attempt's whole time budget, connect to answer: a hard deadline, not a per-read timeout.
PARLEY_PUSH_TIMEOUT_SECONDS = env.float("PARLEY_PUSH_TIMEOUT_SECONDS", default=10.0)
# The most of a push service's answer body read; it is dropped unread past this, and never kept.
PARLEY_PUSH_MAX_RESPONSE_BYTES = env.int("PARLEY_PUSH_MAX_RESPONSE_BYTES", default=4096)
# A push not finished this long after its attempt began (a worker killed mid-push, a lost task)
# is handed out again by the sweep. Must exceed PARLEY_PUSH_TIMEOUT_SECONDS by a margin.
PARLEY_PUSH_LEASE_SECONDS = env.float("PARLEY_PUSH_LEASE_SECONDS", default=60.0)
PARLEY_PUSH_PREVIEW_CHARS = env.int("PARLEY_PUSH_PREVIEW_CHARS", default=120)
# Where pushes may go: https on port 443 of these hosts ("*.example.com": any name under it;
# "*": any host), and only while the name resolves to public addresses (docs/security.md,
# "Push endpoints"). The defaults are the push services of Chrome/Chromium, Firefox, Edge, Safari.
PARLEY_PUSH_ALLOWED_HOSTS = env.list("PARLEY_PUSH_ALLOWED_HOSTS", default=[
    "fcm.googleapis.com", "updates.push.services.mozilla.com", "*.notify.windows.com", "*.push.apple.com",
])
# Tests only: origins ("http://127.0.0.1:<port>") exempt from every rule above, for the local
# push service the test suite runs. Deliberately not read from the environment.
PARLEY_PUSH_INSECURE_TEST_ORIGINS: list[str] = []
# Open bursts wait in one sorted set; the beat starts the due ones this often, at most this
# many per query (notifications.markers): a burst starts within a window and this interval.
PARLEY_PUSH_DUE_POLL_SECONDS = env.float("PARLEY_PUSH_DUE_POLL_SECONDS", default=1.0)
PARLEY_PUSH_DUE_BATCH = env.int("PARLEY_PUSH_DUE_BATCH", default=1000)
CELERY_BEAT_SCHEDULE["parley.push.due"] = {
    "task": "parley.push.due",
    "schedule": PARLEY_PUSH_DUE_POLL_SECONDS,
    # Polls a stopped worker missed are worth nothing once the next one is queued.
    "options": {"expires": max(PARLEY_PUSH_DUE_POLL_SECONDS * 5, 5.0)},
}
CELERY_BEAT_SCHEDULE["parley.push.sweep"] = {
    "task": "parley.push.sweep",
    "schedule": PARLEY_PUSH_SWEEP_INTERVAL_SECONDS,
}

# --- Operations: metrics, degraded mode, admission control, the canary (docs/operations.md) -----
# /metrics answers only with "Authorization: Bearer <token>" when this is set.
PARLEY_METRICS_TOKEN = env("PARLEY_METRICS_TOKEN", default="")
# A message frame's ack is expected within this; later (or never) counts as a timeout.
PARLEY_ACK_TIMEOUT_MS = env.int("PARLEY_ACK_TIMEOUT_MS", default=2000)
# Threads per gateway process for database work (gateway.db); each holds a connection.
PARLEY_GATEWAY_DB_THREADS = env.int("PARLEY_GATEWAY_DB_THREADS", default=16)
# Connections a gateway's listening socket holds before daphne accepts them (Twisted's default,
# 50, resets a burst of new clients; the kernel caps it at net.core.somaxconn).
PARLEY_GATEWAY_LISTEN_BACKLOG = env.int("PARLEY_GATEWAY_LISTEN_BACKLOG", default=1024)
# The gateway's garbage collector (gateway.heap): collect the youngest generation after this
# many new tracked objects, the next after this many of its collections, the oldest likewise
# (Python's defaults: 700, 10, 10; a storm then paused a gateway 150-340 ms per full collection).
_gc_thresholds = env.list("PARLEY_GATEWAY_GC_THRESHOLDS", default=["20000", "20", "20"])
if len(_gc_thresholds) != 3 or not all(v.isdigit() and int(v) > 0 for v in _gc_thresholds):
    raise ImproperlyConfigured("PARLEY_GATEWAY_GC_THRESHOLDS is three positive integers, e.g. 20000,20,20")
PARLEY_GATEWAY_GC_THRESHOLDS = tuple(int(v) for v in _gc_thresholds)
# Each gateway process ticks this often: ack timeouts, metrics, degraded-mode signals.
PARLEY_GATEWAY_TICK_SECONDS = env.float("PARLEY_GATEWAY_TICK_SECONDS", default=1.0)
# parley_gateway_cpu_seconds_per_delivery is the CPU over the deliveries of this many seconds.
PARLEY_GATEWAY_CPU_WINDOW_SECONDS = env.float("PARLEY_GATEWAY_CPU_WINDOW_SECONDS", default=10.0)
# Degraded mode (ops.degraded; docs/operations.md): signals summed over the window; enter above
# a threshold, leave once every signal stays below its (lower) exit threshold for CALM seconds.
PARLEY_DEGRADED_WINDOW_SECONDS = env.int("PARLEY_DEGRADED_WINDOW_SECONDS", default=10)
# Between its ticks each gateway reads the shared level this often (one cache read), so a level
# another gateway decided reaches its sockets within this rather than at its next tick.
PARLEY_DEGRADED_FOLLOW_SECONDS = env.float("PARLEY_DEGRADED_FOLLOW_SECONDS", default=0.25)
if not PARLEY_DEGRADED_FOLLOW_SECONDS > 0:  # 0 would read the cache in a busy loop
    raise ImproperlyConfigured("PARLEY_DEGRADED_FOLLOW_SECONDS is a positive number of seconds, e.g. 0.25")
# Server-side lag, enough alone. Gateway lag: a tick is late when it lagged more than
# GATEWAY_LAG_MS (the loop woke it that late, a message event arrived that old, a call waited
# that long for a database thread, frames waited that long to be handled, or an event has waited
# that long in the channel layer); hot when, over the last LAG_WINDOW seconds, at least
# MIN_LATE_TICKS ticks were late and more than LATE_TICK_RATIO of them; calm below the exit
# ratio over the whole window.
PARLEY_DEGRADED_GATEWAY_LAG_MS = env.int("PARLEY_DEGRADED_GATEWAY_LAG_MS", default=500)
# A tick is late at the lower TYPING_LAG_MS too while typing was at least TYPING_SHARE of the
# frames and events the process's sockets handled since the last tick: what is shed first is
# most of the work, and the rest already waits for it.
PARLEY_DEGRADED_TYPING_LAG_MS = env.int("PARLEY_DEGRADED_TYPING_LAG_MS", default=50)
PARLEY_DEGRADED_TYPING_SHARE = env.float("PARLEY_DEGRADED_TYPING_SHARE", default=0.5)
# How long clients' frames waited to be handled counts from the socket ranked MIN_SOCKETS (or
# SOCKET_SHARE of the sockets that sent frames, if more) from the longest: one client's own burst
# waits on itself; many waiting sockets are the server's lag.
PARLEY_DEGRADED_INBOUND_MIN_SOCKETS = env.int("PARLEY_DEGRADED_INBOUND_MIN_SOCKETS", default=3)
PARLEY_DEGRADED_INBOUND_SOCKET_SHARE = env.float("PARLEY_DEGRADED_INBOUND_SOCKET_SHARE", default=0.1)
PARLEY_DEGRADED_LAG_WINDOW_SECONDS = env.int("PARLEY_DEGRADED_LAG_WINDOW_SECONDS", default=3)
PARLEY_DEGRADED_MIN_LATE_TICKS = env.int("PARLEY_DEGRADED_MIN_LATE_TICKS", default=2)
PARLEY_DEGRADED_LATE_TICK_RATIO = env.float("PARLEY_DEGRADED_LATE_TICK_RATIO", default=0.2)
PARLEY_DEGRADED_LATE_TICK_RATIO_EXIT = env.float("PARLEY_DEGRADED_LATE_TICK_RATIO_EXIT", default=0.1)
PARLEY_DEGRADED_QUEUE_LAG_SECONDS = env.float("PARLEY_DEGRADED_QUEUE_LAG_SECONDS", default=10.0)
PARLEY_DEGRADED_QUEUE_LAG_EXIT_SECONDS = env.float("PARLEY_DEGRADED_QUEUE_LAG_EXIT_SECONDS", default=5.0)
PARLEY_DEGRADED_QUEUES = env.list("PARLEY_DEGRADED_QUEUES", default=["messages", "receipts", "push"])
# What clients show, weighed by device, counts only when server-side lag corroborates it: at
# least CORROBORATING_TICK_RATIO of the window's ticks lagged over CORROBORATING_LAG_MS, or the
# queue lag is over its exit threshold. Ack timeouts: the share of devices with an ack timeout
# among the devices with acks decided, once there were MIN_DEVICES of those on average.
PARLEY_DEGRADED_CORROBORATING_LAG_MS = env.int("PARLEY_DEGRADED_CORROBORATING_LAG_MS", default=250)
PARLEY_DEGRADED_CORROBORATING_TICK_RATIO = env.float("PARLEY_DEGRADED_CORROBORATING_TICK_RATIO", default=0.1)
PARLEY_DEGRADED_DEVICE_TIMEOUT_SHARE = env.float("PARLEY_DEGRADED_DEVICE_TIMEOUT_SHARE", default=0.2)
PARLEY_DEGRADED_DEVICE_TIMEOUT_SHARE_EXIT = env.float("PARLEY_DEGRADED_DEVICE_TIMEOUT_SHARE_EXIT", default=0.1)
PARLEY_DEGRADED_MIN_DEVICES = env.float("PARLEY_DEGRADED_MIN_DEVICES", default=20)
# A disconnect spike: disconnects in the window over the average open sockets (corroborated too).
PARLEY_DEGRADED_DISCONNECT_RATIO = env.float("PARLEY_DEGRADED_DISCONNECT_RATIO", default=0.10)
PARLEY_DEGRADED_DISCONNECT_RATIO_EXIT = env.float("PARLEY_DEGRADED_DISCONNECT_RATIO_EXIT", default=0.05)
PARLEY_DEGRADED_DISCONNECT_MIN = env.int("PARLEY_DEGRADED_DISCONNECT_MIN", default=100)
PARLEY_DEGRADED_ESCALATE_SECONDS = env.float("PARLEY_DEGRADED_ESCALATE_SECONDS", default=10.0)
PARLEY_DEGRADED_CALM_SECONDS = env.float("PARLEY_DEGRADED_CALM_SECONDS", default=30.0)
# Reconnect-storm admission (ops.admission): replays at once per gateway
# process, and how much later a replay is served per message it is behind.
PARLEY_REPLAY_CONCURRENCY = env.int("PARLEY_REPLAY_CONCURRENCY", default=4)
PARLEY_REPLAY_ADMISSION_MS_PER_MESSAGE = env.float("PARLEY_REPLAY_ADMISSION_MS_PER_MESSAGE", default=1.0)
# A gateway shutting down asks its clients to come back at random over sockets / RATE
# seconds (at least 1 s, at most MAX), and waits at most GRACE for the goodbyes.
PARLEY_RESTART_RECONNECT_RATE = env.float("PARLEY_RESTART_RECONNECT_RATE", default=200.0)
PARLEY_RESTART_RECONNECT_MAX_SECONDS = env.float("PARLEY_RESTART_RECONNECT_MAX_SECONDS", default=30.0)
PARLEY_GATEWAY_SHUTDOWN_GRACE_SECONDS = env.float("PARLEY_GATEWAY_SHUTDOWN_GRACE_SECONDS", default=5.0)
# A gateway exits at most this long after SIGTERM: in-flight requests may finish within the
# grace period, then new connections are refused, what remains is cancelled, and whatever a
# thread is still blocked in at this bound is abandoned (committed writes are in PostgreSQL;
# lost doorbells are repaired by replay). At least the grace period.
PARLEY_GATEWAY_SHUTDOWN_TIMEOUT_SECONDS = env.float("PARLEY_GATEWAY_SHUTDOWN_TIMEOUT_SECONDS", default=10.0)
# The canary (ops.canary): the gateway URLs it connects to (the load balancer); none: off.
PARLEY_CANARY_URLS = env.list("PARLEY_CANARY_URLS", default=[])
PARLEY_CANARY_INTERVAL_SECONDS = env.float("PARLEY_CANARY_INTERVAL_SECONDS", default=15.0)
PARLEY_CANARY_TIMEOUT_SECONDS = env.float("PARLEY_CANARY_TIMEOUT_SECONDS", default=10.0)
CELERY_BEAT_SCHEDULE["parley.bulk.canary"] = {
    "task": "parley.bulk.canary",
    "schedule": PARLEY_CANARY_INTERVAL_SECONDS,
    "options": {"expires": PARLEY_CANARY_INTERVAL_SECONDS},  # a late canary is a stale one
}
