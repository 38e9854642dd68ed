"""Settings of the relay baseline: a channel layer and, for the persisting variant, a database.

RELAY_LAYER picks the channels-redis layer: ``core`` (RedisChannelLayer, what Parley's
gateway uses) or ``pubsub`` (RedisPubSubChannelLayer). Both on REDIS_URL.
"""
import os

SECRET_KEY = "relay-bench-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels", "bench.relay"]
ASGI_APPLICATION = "bench.relay.asgi.application"
USE_TZ = True

_BACKENDS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": _BACKENDS[os.environ.get("RELAY_LAYER", "core")],
        "CONFIG": {"hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")]},
    }
}

_DATABASE_URL = os.environ.get("DATABASE_URL", "")
if _DATABASE_URL:
    import environ

    DATABASES = {"default": environ.Env.db_url_config(_DATABASE_URL)}
    DATABASES["default"]["CONN_MAX_AGE"] = 60
else:
    DATABASES = {}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
