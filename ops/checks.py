"""System checks that operating Parley needs (``manage.py check``; ``--deploy`` for production).

Django's own deploy check (security.W009) only *warns* about a weak key, and the key Parley
falls back to without ``DJANGO_SECRET_KEY`` is long enough to pass it. A warning does not stop
``check --deploy`` at its default fail level, so a release could go out signing sessions,
CSRF tokens and password-reset links with a key anyone can read in the repository. The
published key is therefore an Error under ``--deploy``; plain ``check`` (``make run``, the
tests) keeps it, since development needs no secret.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

# The development key, published in chatproject/settings.py as the default of
# DJANGO_SECRET_KEY. Defined here, on the operations floor, so the check that refuses it and
# the settings that fall back to it name the same string.
PUBLISHED_SECRET_KEY = "parley-dev-insecure-key-change-me-in-production"

SECRET_KEY_PUBLISHED = "ops.E001"


@register(Tags.security, deploy=True)
def check_secret_key_is_not_published(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    keys = [getattr(settings, "SECRET_KEY", ""), *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if any(key == PUBLISHED_SECRET_KEY or not key for key in keys):
        return [Error(
            "SECRET_KEY (or one of SECRET_KEY_FALLBACKS) is the development key published in "
            "Parley's repository, or empty.",
            hint="Set DJANGO_SECRET_KEY to a long random value kept out of the repository, "
                 "e.g. python -c 'import secrets; print(secrets.token_urlsafe(64))'.",
            id=SECRET_KEY_PUBLISHED,
        )]
    return []
