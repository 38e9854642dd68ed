"""The operator's view of the message store.

The admin reads everything but writes little: what the write path assigns (ids, seqs,
``last_seq``, ``member_count``, watermarks) is never editable here, and nothing that would
skip a use-case function is offered. Messages are stored only by
``messaging.send.do_send_message``, conversations and memberships are created by the
conversation use-cases (which keep ``member_count`` and tell the members' sockets), and a
deleted message would leave a gap in its conversation's seqs. So messages are view-only, and
conversations and memberships can be edited (title, visibility, role) but neither added nor
deleted here: a conversation goes with its messages, and moderators tombstone a message
instead (``messaging.moderation``). Flags are listed by the text that was reported.
"""
from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from .models import (
    Attachment,
    Conversation,
    Device,
    Flag,
    Membership,
    Mention,
    Message,
    MessageChange,
    MessageEdit,
    ModerationDecision,
    Reaction,
    User,
)


class AddedElsewhere:
    """Rows of this model are created by a use-case function, never from the admin."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ViewOnly(AddedElsewhere):
    def has_change_permission(self, request, obj=None) -> bool:
        return False


def _changelist_link(model, text: str, **filters) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, text)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("display_name", "first_name", "last_name", "email")}),
        ("Moderation", {"fields": ("suspended_at",)}),
        *(DjangoUserAdmin.fieldsets or ())[2:],
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "display_name", "password1", "password2")}),
    )
    list_display = ("username", "display_name", "email", "is_active", "is_staff", "suspended_at", "last_login",
                    "date_joined")
    search_fields = ("username", "display_name", "email")
    # Suspensions go through the moderation API, which records them and closes the sockets.
    readonly_fields = ("last_login", "date_joined", "suspended_at")


class MembershipFormSet(BaseInlineFormSet):
    def get_queryset(self):
        # A channel may have thousands of members; the inline shows the first ones and links
        # to the full, paginated list. Slicing here (after the inline's filter) keeps the
        # rows shown and the rows saved the same.
        return super().get_queryset()[: MembershipInline.max_shown]


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    max_shown = 100
    fields = ("user", "role", "joined_at", "delivered_seq", "read_seq")
    readonly_fields = ("user", "joined_at", "delivered_seq", "read_seq")
    ordering = ("id",)
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def has_add_permission(self, request, obj=None) -> bool:
        # Joining goes through do_add_members / do_join_channel, which keep member_count
        # and announce the new conversation to the member's open sockets.
        return False


@admin.register(Conversation)
class ConversationAdmin(AddedElsewhere, admin.ModelAdmin):
    list_display = ("id", "__str__", "kind", "public", "is_default", "member_count", "last_seq", "last_activity_at",
                    "created_by")
    list_display_links = ("id", "__str__")
    list_filter = ("kind", "public", "is_default")
    list_select_related = ("created_by",)
    search_fields = ("title", "=id")
    search_help_text = "Title, or an exact conversation id."
    date_hierarchy = "last_activity_at"
    ordering = ("-last_activity_at",)
    fields = ("kind", "title", "topic", "public", "is_default", "member_count", "last_seq", "slow_mode_seconds",
              "direct_key", "created_by", "created_at", "last_activity_at", "browse")
    # Slow mode is a moderator's decision, made (and recorded) through the moderation API.
    readonly_fields = ("kind", "member_count", "last_seq", "slow_mode_seconds", "direct_key", "created_by",
                       "created_at", "last_activity_at", "browse")
    inlines = (MembershipInline,)

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting a conversation would delete its messages, which only ever become tombstones.
        return False

    @admin.display(description="Browse")
    def browse(self, obj: Conversation) -> str:
        return format_html(
            "{} &middot; {}",
            _changelist_link(Message, f"{obj.last_seq} messages", conversation__exact=obj.pk),
            _changelist_link(Membership, f"{obj.member_count} members", conversation__exact=obj.pk),
        )


@admin.register(Membership)
class MembershipAdmin(AddedElsewhere, admin.ModelAdmin):
    list_display = ("id", "conversation", "user", "role", "delivered_seq", "read_seq", "joined_at")
    list_filter = ("role", "conversation__kind")
    list_select_related = ("conversation", "user")
    search_fields = ("user__username", "user__display_name", "conversation__title")
    fields = ("conversation", "user", "role", "joined_at", "delivered_seq", "read_seq")
    readonly_fields = ("conversation", "user", "joined_at", "delivered_seq", "read_seq")

    def has_delete_permission(self, request, obj=None) -> bool:
        # Leaving goes through do_remove_member, which stops delivery to the user's sockets.
        return False


@admin.register(Device)
class DeviceAdmin(AddedElsewhere, admin.ModelAdmin):
    list_display = ("id", "name", "platform", "user", "created_at", "last_seen_at")
    list_filter = ("platform",)
    list_select_related = ("user",)
    search_fields = ("name", "user__username")
    date_hierarchy = "created_at"
    fields = ("id", "user", "name", "platform", "created_at", "last_seen_at")
    readonly_fields = ("id", "user", "created_at", "last_seen_at")


class MessageEditInline(ViewOnly, admin.TabularInline):
    """What the body said before each edit (a sender's delete erases it with the body)."""

    model = MessageEdit
    fields = ("replaced_at", "body")
    readonly_fields = fields
    extra = 0

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ("id", "conversation", "seq", "sender", "preview", "state", "edited_at", "created_at")
    list_filter = ("state", "conversation__kind")
    list_select_related = ("conversation", "sender")
    search_fields = ("client_msg_id", "sender__username", "body")
    date_hierarchy = "created_at"
    ordering = ("-id",)
    # Counting every row of a large message table on each page view is not worth it.
    show_full_result_count = False
    fields = ("conversation", "seq", "sender", "sender_device", "client_msg_id", "state", "created_at", "body",
              "reply_to", "edited_at", "version", "mention_ids", "reactions")
    raw_id_fields = ("reply_to",)
    inlines = [MessageEditInline]

    def has_delete_permission(self, request, obj=None) -> bool:
        # A deleted row would be a gap in its conversation's seqs. Moderators tombstone instead.
        return False

    @admin.display(description="Body")
    def preview(self, obj: Message) -> str:
        return Truncator(obj.body).chars(80)


@admin.register(Flag)
class FlagAdmin(ViewOnly, admin.ModelAdmin):
    # Flags are raised by members through the API and resolved in the moderators' queue.
    list_display = ("id", "reported_text", "reason", "status", "sender", "reporter", "created_at", "resolved_at")
    list_display_links = ("id", "reported_text")
    list_filter = ("status", "reason")
    list_select_related = ("message__sender", "reporter", "decision")
    search_fields = ("note", "reporter__username", "=message__id", "message__body", "decision__removed_body")
    date_hierarchy = "created_at"
    fields = ("reported_text", "message", "reporter", "reason", "note", "status", "created_at", "resolved_at",
              "decision")
    readonly_fields = ("reported_text",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a flag is evidence for the decision that resolved it

    @admin.display(description="Reported text")
    def reported_text(self, obj: Flag) -> str:
        # What it said when reported; older flags predate that record, and a removed message's
        # body is blank, its text surviving only in the removal decision.
        text = obj.reported_body or obj.message.body or (obj.decision.removed_body if obj.decision else "")
        return Truncator(text).chars(80) or "(removed)"

    @admin.display(description="Sender", ordering="message__sender__username")
    def sender(self, obj: Flag) -> str:
        return str(obj.message.sender)


@admin.register(ModerationDecision)
class ModerationDecisionAdmin(ViewOnly, admin.ModelAdmin):
    """The audit trail: written by messaging.moderation, read here, never changed or deleted."""

    list_display = ("created_at", "action", "moderator", "user", "conversation", "message", "note_preview")
    list_filter = ("action",)
    list_select_related = ("moderator", "user", "conversation", "message")
    search_fields = ("note", "moderator__username", "user__username", "=message__id", "=conversation__id")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    fields = ("created_at", "action", "moderator", "note", "user", "conversation", "message",
              "slow_mode_seconds", "removed_body")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Note")
    def note_preview(self, obj: ModerationDecision) -> str:
        return Truncator(obj.note).chars(80)


@admin.register(MessageChange)
class MessageChangeAdmin(ViewOnly, admin.ModelAdmin):
    """The change stream, numbered by messaging.changes.allocate_change: read here, never edited."""

    list_display = ("conversation", "change", "kind", "message", "actor", "at")
    list_filter = ("kind",)
    list_select_related = ("conversation", "message", "actor")
    search_fields = ("=conversation__id", "=message__id", "actor__username")
    ordering = ("-id",)
    show_full_result_count = False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a deleted row would be a gap in the conversation's change numbers


@admin.register(Reaction)
class ReactionAdmin(ViewOnly, admin.ModelAdmin):
    # Changing one here would skip the message's summary and the change stream (messaging.reactions).
    list_display = ("emoji", "message", "user", "created_at")
    list_select_related = ("message", "user")
    search_fields = ("=message__id", "user__username", "emoji")
    ordering = ("-id",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Mention)
class MentionAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ("user", "conversation", "seq", "message")
    list_select_related = ("user", "conversation", "message")
    search_fields = ("user__username", "=conversation__id", "=message__id")
    ordering = ("-id",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MessageEdit)
class MessageEditAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ("message", "replaced_at", "body_preview")
    list_select_related = ("message",)
    search_fields = ("=message__id", "body")
    ordering = ("-id",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Body before the edit")
    def body_preview(self, obj: MessageEdit) -> str:
        return Truncator(obj.body).chars(80)


@admin.register(Attachment)
class AttachmentAdmin(ViewOnly, admin.ModelAdmin):
    # Uploads come from the upload use case and go with their message (messaging.attachments);
    # a row deleted here would leave its file in the storage and its message's summary stale.
    list_display = ("name", "content_type", "size", "uploader", "message", "created_at", "discarded_at")
    list_select_related = ("uploader", "message")
    list_filter = ("content_type",)
    search_fields = ("name", "uploader__username", "=message__id")
    ordering = ("-id",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
