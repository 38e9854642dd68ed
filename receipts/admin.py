from django.contrib import admin

from .models import DeviceCursor


@admin.register(DeviceCursor)
class DeviceCursorAdmin(admin.ModelAdmin):
    """Ack cursors, view-only: they only move forward, and only receipts.watermarks moves them."""

    list_display = ("id", "device", "conversation", "ack_seq", "updated_at")
    list_select_related = ("device__user", "conversation")
    list_filter = ("conversation__kind",)
    search_fields = ("device__name", "device__user__username", "conversation__title")
    date_hierarchy = "updated_at"
    fields = ("device", "conversation", "ack_seq", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
