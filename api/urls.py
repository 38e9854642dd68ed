"""Routes of /api/v1/ (CONTRACT). Paths have no trailing slash; each is also served with one."""
from __future__ import annotations

from typing import Any, Callable

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, register_converter
from drf_spectacular.views import SpectacularAPIView

from . import (
    auth,
    channels,
    conversations,
    devices,
    docs,
    messages,
    moderation,
    profile,
    receipts,
    uploads,
    search,
    users,
)


class IdConverter:
    """1 to 18 digits: every such id fits a 64-bit column (``<int:>`` would pass 10**30 to the database)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

app_name = "api"
urlpatterns = [
    path("auth/signup", auth.SignupView.as_view(), name="auth-signup"),
    path("auth/login", auth.LoginView.as_view(), name="auth-login"),
    path("auth/logout", auth.LogoutView.as_view(), name="auth-logout"),
    path("auth/token", auth.TokenView.as_view(), name="auth-token"),
    path("auth/end-session", profile.EndSessionView.as_view(), name="auth-end-session"),
    path("me", profile.MeView.as_view(), name="me"),
    path("me/password", profile.PasswordView.as_view(), name="me-password"),
    path("ws-ticket", auth.WsTicketView.as_view(), name="ws-ticket"),
    path("users", users.UserSearchView.as_view(), name="users"),
    path("devices", devices.DevicesView.as_view(), name="devices"),
    path("devices/<str:device_id>", devices.DeviceView.as_view(), name="device"),
    path("devices/<str:device_id>/push-subscription", devices.PushSubscriptionView.as_view(),
         name="device-push-subscription"),
    path("channels", channels.PublicChannelsView.as_view(), name="channels"),
    path("search", search.SearchView.as_view(), name="search"),
    path("conversations", conversations.ConversationsView.as_view(), name="conversations"),
    path("conversations/<id:conversation_id>", conversations.ConversationView.as_view(), name="conversation"),
    path("conversations/<id:conversation_id>/members", conversations.MembersView.as_view(), name="conversation-members"),
    path("conversations/<id:conversation_id>/members/<id:user_id>", conversations.MemberView.as_view(),
         name="conversation-member"),
    path("conversations/<id:conversation_id>/join", conversations.JoinView.as_view(), name="conversation-join"),
    path("conversations/<id:conversation_id>/me", conversations.MySettingsView.as_view(), name="conversation-me"),
    path("conversations/<id:conversation_id>/messages", messages.MessagesView.as_view(), name="conversation-messages"),
    path("conversations/<id:conversation_id>/read", receipts.ReadView.as_view(), name="conversation-read"),
    path("conversations/<id:conversation_id>/delivered", receipts.DeliveredView.as_view(),
         name="conversation-delivered"),
    path("conversations/<id:conversation_id>/receipts", receipts.ReceiptsView.as_view(), name="conversation-receipts"),
    path("conversations/<id:conversation_id>/changes", messages.ChangesView.as_view(), name="conversation-changes"),
    path("messages/<id:message_id>", messages.MessageView.as_view(), name="message"),
    path("messages/<id:message_id>/reactions", messages.ReactionsView.as_view(), name="message-reactions"),
    path("messages/<id:message_id>/reactions/<str:emoji>", messages.ReactionView.as_view(), name="message-reaction"),
    path("messages/<id:message_id>/info", receipts.MessageInfoView.as_view(), name="message-info"),
    path("messages/<id:message_id>/flag", moderation.FlagView.as_view(), name="message-flag"),
    path("uploads", uploads.UploadsView.as_view(), name="uploads"),
    path("uploads/<id:attachment_id>", uploads.UploadView.as_view(), name="upload"),
    path("files/<id:attachment_id>", uploads.FileView.as_view(), name="file"),
    path("files/<id:attachment_id>/thumbnail", uploads.ThumbnailView.as_view(), name="file-thumbnail"),
    path("moderation/flags", moderation.FlagQueueView.as_view(), name="moderation-flags"),
    path("moderation/flags/<id:flag_id>/resolve", moderation.ResolveFlagView.as_view(),
         name="moderation-flag-resolve"),
    path("moderation/flags/<id:flag_id>/context", moderation.FlagContextView.as_view(),
         name="moderation-flag-context"),
    path("moderation/decisions", moderation.DecisionsView.as_view(), name="moderation-decisions"),
    path("moderation/users/<id:user_id>/suspension", moderation.SuspensionView.as_view(),
         name="moderation-user-suspension"),
    path("moderation/conversations/<id:conversation_id>/slow-mode", moderation.SlowModeView.as_view(),
         name="moderation-conversation-slow-mode"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", docs.ApiDocsView.as_view(), name="docs"),
]


def _slash_variant(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The same view behind a plain function, so the schema lists each path once."""
    def serve(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return view(request, *args, **kwargs)

    serve.csrf_exempt = True  # type: ignore[attr-defined]  # the API views enforce CSRF themselves
    return serve


def _with_trailing_slashes(patterns: list[URLPattern]) -> list[URLPattern]:
    return patterns + [path(f"{p.pattern}/", _slash_variant(p.callback)) for p in patterns]


urlpatterns = _with_trailing_slashes(urlpatterns)
