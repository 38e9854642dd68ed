"""Fixtures of the core's tests."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The production hasher spends ~0.5 s per password on purpose; these tests make users often."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
