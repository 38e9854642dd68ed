"""The browser app's pages: server-rendered shells for the JavaScript client in
static/parley/, which talks to the same REST API and WebSocket gateway as every other client.

The views only decide who may see which page and hand the client its configuration; sign
up and log in post to the REST auth endpoints (so the login throttle guards one path), and
log out calls the same use case as ``POST /api/v1/auth/logout``.
"""
from __future__ import annotations

from functools import cache, wraps
from typing import Any, Callable

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods

from messaging.accounts import do_logout_everywhere
from messaging.models import MODERATE_PERMISSION, User
from messaging.payloads import user_payload
from notifications import vapid

SERVICE_WORKER = "sw.js"
# Defence in depth behind "user content only ever goes in as text": the pages run no script
# but Parley's own files, load nothing from elsewhere, and can't be framed.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
    "frame-ancestors 'none'",
])


def content_security_policy(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response

    return wrapped


def _next_url(request: HttpRequest) -> str:
    """Where to go after logging in: a path on this site, never another origin."""
    target = request.GET.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return "/"


@cache
def _service_worker_url() -> str | None:
    # The push helper owns static/sw.js; the client registers it only when it is there.
    return static(SERVICE_WORKER) if finders.find(SERVICE_WORKER) else None


class SignedInRequest(HttpRequest):
    """A request past ``login_required``: its user is a real one."""

    user: User


def _client_config(request: SignedInRequest, **extra: Any) -> dict[str, Any]:
    """What the JavaScript client needs to know up front (rendered with json_script, never as HTML)."""
    return {
        "me": user_payload(request.user),
        "moderator": request.user.has_perm(MODERATE_PERMISSION),
        "limits": {
            "max_body_length": settings.PARLEY_MAX_BODY_LENGTH,
            "receipt_broadcast_max_members": settings.PARLEY_RECEIPT_BROADCAST_MAX_MEMBERS,
            "typing_throttle_ms": settings.PARLEY_TYPING_THROTTLE_MS,
            "moderation_refresh_seconds": settings.PARLEY_MODERATION_REFRESH_SECONDS,
            "max_attachments": settings.PARLEY_MAX_ATTACHMENTS_PER_MESSAGE,
            "max_upload_bytes": settings.PARLEY_UPLOAD_MAX_BYTES,
            "edit_window_seconds": settings.PARLEY_EDIT_WINDOW_SECONDS,
            "mention_all_max_members": settings.PARLEY_MENTION_ALL_MAX_MEMBERS,
        },
        "push": {
            "vapid_public_key": vapid.public_key(),
            "service_worker": _service_worker_url(),
        },
        **extra,
    }


@content_security_policy
@require_GET
def login_page(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(_next_url(request))
    return render(request, "parley/login.html", {"next": _next_url(request),
                                                 "signup_open": settings.PARLEY_OPEN_SIGNUP})


@content_security_policy
@require_GET
def signup_page(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("/")
    return render(request, "parley/signup.html", {"signup_open": settings.PARLEY_OPEN_SIGNUP})


@content_security_policy
@require_http_methods(["GET", "POST"])
def logout_page(request: HttpRequest) -> HttpResponse:
    """GET asks to confirm (a link or a prefetch must not log anyone out); POST logs out."""
    if request.method == "GET":
        if not request.user.is_authenticated:
            return redirect(settings.LOGIN_URL)
        return render(request, "parley/logout.html")
    if request.user.is_authenticated:
        do_logout_everywhere(user=request.user)
    logout(request)
    return redirect(settings.LOGIN_URL)


@content_security_policy
@login_required
@require_GET
def app_shell(request: SignedInRequest, conversation_id: str | None = None) -> HttpResponse:
    """The chat app: conversation list and conversation view, opened on /c/<id> when given."""
    config = _client_config(request, conversation=int(conversation_id) if conversation_id else None)
    return render(request, "parley/app.html", {"config": config})


@content_security_policy
@login_required
@require_GET
def settings_page(request: SignedInRequest) -> HttpResponse:
    """Profile, password, this user's devices (each can be logged out) and the theme."""
    return render(request, "parley/settings.html", {"config": _client_config(request), "page": "settings"})


@content_security_policy
@login_required
@require_GET
def moderation_page(request: SignedInRequest) -> HttpResponse:
    if not request.user.has_perm(MODERATE_PERMISSION):
        raise PermissionDenied("Only moderators see the moderation queue.")
    return render(request, "parley/moderation.html", {"config": _client_config(request)})
