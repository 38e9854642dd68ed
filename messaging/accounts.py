"""Account use cases (sign up, issue API tokens, log out everywhere, the profile and the
password) and the user directory.

Session login and logout themselves stay at the HTTP edge (they need the request).
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from rest_framework.authtoken.models import Token

from . import fanout
from .checks import check_text
from .conversations import join_default_channels
from .errors import Invalid
from .events import CLOSE_NOT_AUTHENTICATED
from .models import User, char_limit


def _username_taken() -> Invalid:
    return Invalid("this username is taken", fields={"username": ["This username is taken."]})


def do_signup(*, username: str, password: str, display_name: str = "") -> tuple[User, str]:
    """A new active user and its API token, in every default channel (``Conversation.is_default``).
    Usernames are unique regardless of case.

    The password is hashed before the first query: hashing is the slow part of a signup
    (hundreds of milliseconds of CPU), and a database connection, once taken from the
    process's pool, is held until the request ends. A burst of signups then shares the pool
    for milliseconds each instead of queueing behind each other's hashing.
    """
    user = User(username=User.normalize_username(username), display_name=display_name,
                password=make_password(password))
    if User.objects.filter(username__iexact=username).exists():
        raise _username_taken()
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise Invalid("the password is too weak", fields={"password": list(exc.messages)}) from None
    try:
        with transaction.atomic():
            user.save()
            token = Token.objects.create(user=user)
            join_default_channels(user)
    except IntegrityError:  # lost a race for the same username
        raise _username_taken() from None
    return user, token.key


def issue_token(user: User) -> str:
    """The user's API token (one per user, shared by its token clients until logout)."""
    token, _created = Token.objects.get_or_create(user=user)
    return token.key


def do_logout_everywhere(*, user: User) -> None:
    """Revoke the user's API token and close every open socket of the user (4401).

    There is one token per user, so logging out ends every token client too; sessions other
    than the caller's end when they expire or log out themselves.
    """
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        fanout.close_user_sockets(user_id=user.pk, code=CLOSE_NOT_AUTHENTICATED)


def do_update_profile(*, user: User, display_name: Any) -> User:
    """Change what other people see as the user's name (blank: the username is shown)."""
    display_name = check_text(display_name, "display_name", max_length=char_limit(User, "display_name")).strip()
    User.objects.filter(pk=user.pk).update(display_name=display_name)
    user.display_name = display_name
    return user


def do_change_password(*, user: User, current_password: Any, new_password: Any) -> User:
    """Change the password, given the current one.

    Every other session of the user ends (Django ties a session to the password's hash; the
    caller keeps its own with ``update_session_auth_hash``), the API token is revoked, and the
    user's open sockets are closed (4401): those of other browsers do not come back.
    """
    if not isinstance(current_password, str) or not user.check_password(current_password):
        raise Invalid("the current password is wrong",
                      fields={"current_password": ["That is not your current password."]})
    if not isinstance(new_password, str):
        raise Invalid("new_password must be a string", fields={"new_password": ["Must be a string."]})
    try:
        validate_password(new_password, user=user)
    except DjangoValidationError as exc:
        raise Invalid("the password is too weak", fields={"new_password": list(exc.messages)}) from None
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        Token.objects.filter(user=user).delete()
        fanout.close_user_sockets(user_id=user.pk, code=CLOSE_NOT_AUTHENTICATED)
    return user


def search_users(*, query: str, viewer: User, limit: int) -> list[User]:
    """Active users other than the viewer whose username or display name contains ``query``.

    An empty query finds no one: the directory is searched, never listed.
    """
    query = query.strip()
    if not query:
        return []
    return list(
        User.objects.filter(is_active=True)
        .filter(Q(username__icontains=query) | Q(display_name__icontains=query))
        .exclude(pk=viewer.pk)
        .order_by("username")[:limit]
    )
