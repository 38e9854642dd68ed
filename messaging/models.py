"""The durable message store. PostgreSQL is the source of truth (docs/architecture.md).

Every table keyed by a conversation leads its keys with ``conversation_id`` so the store can
later be partitioned by conversation. Invariants the database itself enforces:

* ``(conversation, seq)`` is unique: a seq is never assigned twice.
* ``(sender, client_msg_id)`` is unique: a retried send can never store a second row.
* one direct conversation per pair of users (``direct_key`` is unique).
* ``0 <= read_seq <= delivered_seq`` on every membership.

Gap-freedom of seqs is kept by :func:`messaging.send.allocate_seq`, the only writer of
``Conversation.last_seq``; of change numbers by :func:`messaging.changes.allocate_change`, the
only writer of ``Conversation.last_change``; the receipt merge is :meth:`MembershipManager.raise_marks`, the only
writer of the watermarks.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Mapping

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import connection, models
from django.db.models import Q

# Held by the "Moderators" group (migration 0004): review flags, remove messages, suspend
# users, set slow mode (messaging.moderation).
MODERATE_PERMISSION = "messaging.moderate_message"


class User(AbstractUser):
    """A Django auth user with the name other people see."""

    display_name = models.CharField(max_length=100, blank=True, default="")
    # Set by a moderator (messaging.moderation.do_set_suspended): a suspended user may read
    # but not send or type. On the user's row, so the send path checks it without a query.
    suspended_at = models.DateTimeField(null=True, blank=True, editable=False)

    @property
    def shown_name(self) -> str:
        return self.display_name or self.username

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None


class Conversation(models.Model):
    class Kind(models.TextChoices):
        DIRECT = "direct", "Direct"
        GROUP = "group", "Group"
        CHANNEL = "channel", "Channel"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    title = models.CharField(max_length=200, blank=True, default="")
    # What the conversation is about, shown under its title (owners and admins set it).
    topic = models.CharField(max_length=1000, blank=True, default="")
    public = models.BooleanField(default=False)
    # A channel every new user joins at signup (set by a site admin; messaging.accounts.do_signup).
    is_default = models.BooleanField(default=False, help_text="New users join this channel when they sign up.")
    # Highest seq assigned so far. Only allocate_seq() writes it, inside the storing transaction.
    last_seq = models.BigIntegerField(default=0)
    # Highest change number assigned so far (edits, deletes, reactions, removals: the second
    # stream). Only allocate_change() writes it, inside the transaction applying the change.
    last_change = models.BigIntegerField(default=0)
    member_count = models.PositiveIntegerField(default=0)
    # Slow mode, set by moderators: each member sends at most one message per this many
    # seconds here (0: off). Read with the sender's membership, so checking it costs no query.
    slow_mode_seconds = models.PositiveIntegerField(default=0)
    # Buffered fan-out (large channels): the highest seq already handed to the gateways in a
    # batch. Only messaging.tasks.flush_channel_batch moves it, and only forward.
    fanout_seq = models.BigIntegerField(default=0, editable=False)
    # "<low user id>:<high user id>" for direct conversations, NULL otherwise (unique allows many NULLs).
    direct_key = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Bumped with last_seq; orders "my conversations by activity".
    last_activity_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(last_seq__gte=0), name="conversation_last_seq_nonnegative"),
            models.CheckConstraint(condition=Q(last_change__gte=0), name="conversation_last_change_nonnegative"),
            models.CheckConstraint(
                condition=Q(kind="direct", direct_key__isnull=False) | ~Q(kind="direct"),
                name="conversation_direct_has_key",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"{self.kind} #{self.pk}"

    @property
    def is_channel(self) -> bool:
        return self.kind == self.Kind.CHANNEL

    @property
    def is_direct(self) -> bool:
        return self.kind == self.Kind.DIRECT

    @staticmethod
    def direct_key_for(user_a_id: int, user_b_id: int) -> str:
        low, high = sorted((user_a_id, user_b_id))
        return f"{low}:{high}"


def char_limit(model: type[models.Model], field: str) -> int:
    """The ``max_length`` of a model's text field: a limit stated once, on the model."""
    found = model._meta.get_field(field)
    assert isinstance(found, models.CharField) and found.max_length is not None
    return found.max_length


def greatest_sql() -> str:
    """SQL's two-argument maximum on this database (SQLite spells GREATEST as MAX)."""
    return "MAX" if connection.vendor == "sqlite" else "GREATEST"


class MembershipManager(models.Manager["Membership"]):
    def raise_marks(self, targets: Mapping[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
        """The receipt merge: raise memberships' watermarks, in one statement, never lowering one.

        ``targets`` maps a membership's pk to the ``(delivered, read)`` proposed for it. Each
        mark becomes ``GREATEST(current, proposed)``, and delivered is raised to at least
        read, so concurrent devices, reordered acks or a stale retry can never lower a mark
        and ``read_seq <= delivered_seq`` holds. Rows already at or above both proposals are
        not written at all. Returns ``pk -> (delivered_seq, read_seq)`` of the rows that
        advanced: only an advance is news worth broadcasting. Callers clamp proposals to the
        conversation's ``last_seq`` (CONTRACT "Semantics" 5).
        """
        if not targets:
            return {}
        table = self.model._meta.db_table
        greatest = greatest_sql()
        ordered = sorted(targets.items())
        params: list[Any]
        if connection.vendor == "postgresql":
            # Three arrays, one statement text whatever the batch size: psycopg splits and caches
            # a query's text once, while VALUES rows made a new text per size, re-split each time
            # (a quarter of a gateway's CPU under a large channel's acks, issue 15's profile).
            params = [[pk for pk, _ in ordered], [max(d, r) for _, (d, r) in ordered], [r for _, (_, r) in ordered]]
            rows = "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[])"
        else:
            params = [value for pk, (delivered, read) in ordered for value in (pk, max(delivered, read), read)]
            rows = "VALUES " + ", ".join(["(%s, %s, %s)"] * len(targets))
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH target (id, delivered_to, read_to) AS ({rows}) "
                f"UPDATE {table} SET delivered_seq = {greatest}({table}.delivered_seq, target.delivered_to), "
                f"read_seq = {greatest}({table}.read_seq, target.read_to) FROM target "
                f"WHERE {table}.id = target.id "
                f"AND ({table}.delivered_seq < target.delivered_to OR {table}.read_seq < target.read_to) "
                f"RETURNING {table}.id, {table}.delivered_seq, {table}.read_seq",
                params,
            )
            return {pk: (delivered_seq, read_seq) for pk, delivered_seq, read_seq in cursor.fetchall()}


class Membership(models.Model):
    """A user's place in a conversation, with the user's receipt watermarks.

    ``delivered_seq`` and ``read_seq`` are the max over the user's devices. They only move
    forward, and only :meth:`MembershipManager.raise_marks` moves them.
    """

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    class Notify(models.TextChoices):
        """Which messages make an offline push (and an in-tab notification) for this member."""

        ALL = "all", "All messages"
        MENTIONS = "mentions", "Mentions of me"
        NONE = "none", "Nothing"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)
    delivered_seq = models.BigIntegerField(default=0)
    read_seq = models.BigIntegerField(default=0)
    # Notification settings (CONTRACT v1.1, "Conversation settings"): honoured by the push path
    # when each push is decided and again before each attempt (notifications.bursts, .delivery).
    notify = models.CharField(max_length=16, choices=Notify.choices, default=Notify.ALL)
    muted_until = models.DateTimeField(null=True, blank=True)

    objects = MembershipManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "user"], name="membership_unique_member"),
            models.CheckConstraint(condition=Q(read_seq__gte=0), name="membership_read_seq_nonnegative"),
            models.CheckConstraint(
                condition=Q(read_seq__lte=models.F("delivered_seq")), name="membership_read_le_delivered"
            ),
        ]
        indexes = [models.Index(fields=["user", "conversation"], name="membership_by_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.conversation}"

    def is_muted(self, now: datetime) -> bool:
        return self.muted_until is not None and self.muted_until > now


class Device(models.Model):
    """One client installation of a user. Every WebSocket connection belongs to one device."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="devices")
    name = models.CharField(max_length=100, blank=True, default="")
    platform = models.CharField(max_length=50, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name or 'device'} ({self.user})"


class Message(models.Model):
    """A stored message. ``seq`` never changes; everything shown may (messaging.changes).

    ``html``, ``mention_ids``, ``reactions`` and ``attachments`` are derived from ``body`` and
    the :class:`Reaction` and :class:`Attachment` rows, and rewritten in the transaction that changes those, so building
    a message's payload (on every send, page, fill and replay) costs no query beyond the row
    and its joins. ``version`` is the change number that last changed the message (0: never):
    a client holding a newer version ignores an older copy (CONTRACT v1.1, "The change stream").
    """

    class State(models.TextChoices):
        VISIBLE = "visible", "Visible"
        REMOVED = "removed", "Removed"    # by a moderator's decision on a flag
        DELETED = "deleted", "Deleted"    # by its sender (or a moderator) with DELETE

    # No index of their own: the unique constraints below lead with each (their indexes serve
    # every lookup by conversation or by sender). A second, narrower one cost every insert its
    # upkeep, and a plan made on an empty table preferred it, filtering a sender's every message
    # to find one client_msg_id (issue 15, docs/benchmarks/runs/2026-12-08-prepared).
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False)
    seq = models.BigIntegerField()
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages_sent",
                               db_index=False)
    sender_device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    client_msg_id = models.CharField(max_length=64)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.VISIBLE)
    # What this message answers: a message of the same conversation (messaging.send checks it).
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    edited_at = models.DateTimeField(null=True, blank=True)
    version = models.BigIntegerField(default=0)
    # The body rendered for display by messaging.formatting (sanitized, allow-listed HTML).
    html = models.TextField(blank=True, default="")
    # Ids of the users the body mentions now (the Mention rows, as a list for the payload).
    mention_ids = models.JSONField(default=list, blank=True)
    # The summary of the Reaction rows, as the payload shows it (messaging.reactions).
    reactions = models.JSONField(default=list, blank=True)
    # The summary of its Attachment rows, as the payload shows it (messaging.attachments).
    attachments = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            # Also the index of the hot read: messages of C after (or before) seq S.
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_unique_seq"),
            models.UniqueConstraint(fields=["sender", "client_msg_id"], name="message_unique_client_msg_id"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="message_seq_positive"),
        ]
        permissions = [("moderate_message", "Can review flags and remove messages")]

    def __str__(self) -> str:
        return f"#{self.seq} in {self.conversation_id}"

    @property
    def is_removed(self) -> bool:
        """Removed by a moderator or deleted by its sender: no text is left to show."""
        return self.state != self.State.VISIBLE


class MessageChange(models.Model):
    """The change stream: one row per change applied to a stored message, numbered per
    conversation 1, 2, 3 ... with no gap (``change``, from allocate_change), like seqs.

    The record a client gets carries the message as it is when read, so a change row keeps
    no copy of any text: a deleted message's words live nowhere in the stream.
    """

    class Kind(models.TextChoices):
        EDITED = "edited", "Edited"
        DELETED = "deleted", "Deleted"
        REACTION = "reaction", "Reaction"
        REMOVED = "removed", "Removed by a moderator"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    change = models.BigIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Also the index of the change stream's one read: changes of C after K.
            models.UniqueConstraint(fields=["conversation", "change"], name="change_unique_number"),
            models.CheckConstraint(condition=Q(change__gte=1), name="change_number_positive"),
        ]
        # A hello replays the deletions and removals since the device's previous one as
        # message.removed frames (messaging.replay.removals_to_replay).
        indexes = [models.Index(fields=["conversation", "at"], condition=Q(kind__in=["deleted", "removed"]),
                                name="change_withdrawals")]

    def __str__(self) -> str:
        return f"change {self.change} ({self.kind}) in {self.conversation_id}"


class Reaction(models.Model):
    """One user's emoji on a message; the message's ``reactions`` summarizes these rows."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    emoji = models.CharField(max_length=64)  # fully qualified Unicode (messaging.reactions.check_emoji)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "emoji", "user"], name="reaction_once_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user_id} on {self.message_id}"


class Mention(models.Model):
    """A user the message's body mentions now. ``seq`` is the message's, so a member's unread
    mentions are a count over ``seq > read_seq``, never a counter that could drift."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="mention_once_per_message"),
        ]
        # unread_mentions: mentions of U in C after seq S.
        indexes = [models.Index(fields=["user", "conversation", "seq"], name="mention_by_user")]


class MessageEdit(models.Model):
    """A body a message had before an edit: the history moderators see. A sender's delete
    erases it with the body; a moderator's removal keeps it with the evidence."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="edits")
    body = models.TextField()
    replaced_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["replaced_at", "id"]


class Flag(models.Model):
    """A member's report of a message, for the moderators' queue."""

    class Reason(models.TextChoices):
        SPAM = "spam", "Spam"
        ABUSE = "abuse", "Abuse"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="flags")
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="flags_made")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    note = models.CharField(max_length=1000, blank=True, default="")
    # What the message said when it was reported: evidence that an edit or a delete cannot change.
    reported_body = models.TextField(blank=True, default="", editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # The moderator's decision that resolved it (a removal resolves every open flag of its message).
    decision = models.ForeignKey("ModerationDecision", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="flags")

    class Meta:
        constraints = [
            # One open flag per reporter and message; resolved ones may pile up.
            models.UniqueConstraint(
                fields=["message", "reporter"], condition=Q(status="open"), name="flag_one_open_per_reporter"
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="flag_queue")]

    def __str__(self) -> str:
        return f"{self.reason} flag on message {self.message_id}"


class ModerationDecision(models.Model):
    """The moderators' audit trail: one row per decision, written by messaging.moderation and
    never changed afterwards (read-only in the admin).

    A removed message's text lives on here as evidence, and only here: the removal blanks
    ``Message.body``, so no read path can leak it (docs/security.md).
    """

    class Action(models.TextChoices):
        DISMISS = "dismiss", "Dismiss a flag"
        REMOVE_MESSAGE = "remove_message", "Remove a message"
        SUSPEND = "suspend", "Suspend a user"
        UNSUSPEND = "unsuspend", "Lift a suspension"
        SLOW_MODE = "slow_mode", "Set slow mode"
        DELETE_MESSAGE = "delete_message", "Delete a message"

    # PROTECT: an audit record must keep saying who decided; deactivate moderators instead.
    moderator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    note = models.CharField(max_length=1000, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # What the decision was about; the record outlives it (SET_NULL).
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Whom it was about: the user suspended, or the removed message's sender.",
    )
    removed_body = models.TextField(blank=True, default="", help_text="The removed message's text, as evidence.")
    slow_mode_seconds = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        # A conversation's audit, newest first (the admin).
        indexes = [models.Index(fields=["conversation", "created_at"], name="decision_by_conversation")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.moderator} at {self.created_at:%Y-%m-%d %H:%M}"


class Attachment(models.Model):
    """An uploaded file: its uploader's alone until a send attaches it to a message
    (messaging.attachments). ``storage_name`` is made by the server (a UUID) and is the only
    name the storage ever sees; ``name`` is the uploader's file name, sanitized, for display
    and downloads only. ``content_type`` is detected from the bytes, never taken from the client.

    ``discarded_at`` marks the files of a deleted or removed message (and orphans being swept):
    no longer served, their storage objects and then the row are deleted after commit, or by
    the beat sweep should that fail.
    """

    uploader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Where it may be sent: given at upload (membership checked) or set by the send that attaches it.
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    storage_name = models.CharField(max_length=200, unique=True, editable=False)
    thumbnail_name = models.CharField(max_length=200, blank=True, default="", editable=False)
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=127)
    size = models.BigIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    discarded_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(size__gte=0), name="attachment_size_nonnegative")]
        indexes = [
            # The orphan sweep: uploads never attached, oldest first.
            models.Index(fields=["created_at"], condition=Q(message__isnull=True), name="attachment_unattached"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.content_type}, {self.size} bytes)"
