"""The operator's view of the offline path (docs/notifications.md, "Dead letters").

Subscriptions, notified watermarks and pending pushes are written by the browser's REST calls
and by the push tasks, so the admin only shows them. Dead letters are the operator's to act on: retry
(a fresh retry budget; the attempt re-checks read/removed/online like any other) or discard.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib import admin, messages
from django.utils.text import Truncator

from .models import NotificationState, PendingPush, PushDeadLetter, PushSubscription, VapidKeyPair
from .triggers import do_retry_dead_letters


class ReadOnly:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PushSubscription)
class PushSubscriptionAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("device", "user", "push_service", "created_at", "updated_at")
    list_select_related = ("device__user",)
    search_fields = ("device__user__username", "endpoint")
    exclude = ("p256dh", "auth")  # the browser's keys: no use to an operator

    @admin.display(description="user", ordering="device__user__username")
    def user(self, obj: PushSubscription):
        return obj.device.user

    @admin.display(description="push service")
    def push_service(self, obj: PushSubscription) -> str:
        return urlsplit(obj.endpoint).netloc


@admin.register(NotificationState)
class NotificationStateAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("conversation", "user", "notified_seq", "updated_at")
    list_select_related = ("conversation", "user")
    search_fields = ("user__username",)
    raw_id_fields = ("conversation", "user")


@admin.register(PendingPush)
class PendingPushAdmin(ReadOnly, admin.ModelAdmin):
    """Pushes decided and not finished: a long list here means workers are down or dying."""

    list_display = ("created_at", "kind", "subscription", "conversation", "after_seq", "attempts", "lease_until")
    list_filter = ("kind",)
    list_select_related = ("subscription", "conversation")
    raw_id_fields = ("subscription", "conversation")
    exclude = ("token",)
    date_hierarchy = "created_at"

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # finished by their attempts, or dropped by the sweep after the cut-off


@admin.register(PushDeadLetter)
class PushDeadLetterAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("created_at", "kind", "user", "conversation", "device", "attempts", "error")
    list_filter = ("kind",)
    list_select_related = ("user", "conversation", "device")
    search_fields = ("user__username", "last_error")
    raw_id_fields = ("conversation", "user", "subscription", "device")
    date_hierarchy = "created_at"
    actions = ("retry", "discard")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "discard" says what it means here
        return actions

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("notifications.change_pushdeadletter")

    @admin.display(description="last error")
    def error(self, obj: PushDeadLetter) -> str:
        return Truncator(obj.last_error).chars(80)

    @admin.action(description="Retry the selected pushes", permissions=["retry"])
    def retry(self, request, queryset) -> None:
        result = do_retry_dead_letters(queryset)
        if result.retried:
            self.message_user(request, f"{result.retried} push(es) sent for another try.", messages.SUCCESS)
        if result.dropped:
            self.message_user(request, f"{result.dropped} push(es) discarded: their subscription is gone.",
                              messages.WARNING)

    @admin.action(description="Discard the selected pushes", permissions=["delete"])
    def discard(self, request, queryset) -> None:
        deleted, _ = queryset.delete()
        self.message_user(request, f"{deleted} push(es) discarded.", messages.SUCCESS)


@admin.register(VapidKeyPair)
class VapidKeyPairAdmin(ReadOnly, admin.ModelAdmin):
    """The generated VAPID pair (notifications.vapid): its public key and when it was made.
    The private key is never shown; deleting the row makes a new pair (after a restart of
    every process), which invalidates every stored subscription."""

    list_display = ("public_key", "created_at")
    exclude = ("private_key",)
