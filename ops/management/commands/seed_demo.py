"""Demo data, so that `make run` lands a newcomer in a living app.

Everything goes through the use-case functions a client would reach (conversations,
do_send_message, do_mark_read), so seqs, member counts and watermarks are real. Running the
command again changes nothing: users and conversations are looked up before they are made,
every message has a fixed client_msg_id (a retry returns the stored message and burns no
seq), and read marks only ever move forward.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from messaging.conversations import do_create_group, do_get_or_create_direct, do_join_channel
from messaging.models import Conversation, User
from messaging.send import do_send_message
from receipts.watermarks import do_mark_read

DEMO_PASSWORD = "parley-demo"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "parley-admin"
DEMO_USERS = {
    "alice": "Alice Moreau",
    "bob": "Bob Okafor",
    "carol": "Carol Lindqvist",
    "dave": "Dave Park",
}
GROUP_TITLE = "Weekend trip"
CHANNEL_TITLE = "general"

# (conversation, sender, body), sent in this order with client_msg_id "demo-<position>".
HISTORY = [
    ("general", "alice", "Welcome to #general! Everyone on the team is in here."),
    ("direct", "alice", "Hey Bob, are you around later?"),
    ("direct", "bob", "Yes, after five. What's up?"),
    ("trip", "alice", "The cabin is booked for Saturday and Sunday \N{PARTY POPPER}"),
    ("trip", "carol", "Amazing. Who's driving?"),
    ("general", "dave", "Hi all, Dave here. I joined the platform team this week."),
    ("general", "bob", "Welcome, Dave!"),
    ("trip", "bob", "I can drive, the car fits four."),
    ("direct", "alice", "The client demo moved to Thursday. Could you send me the slides tonight?"),
    ("direct", "bob", "Sure, I'll drop them here once they're done."),
    ("general", "carol", "Welcome! Lunch is usually at 12:30 if you want to join us."),
    ("trip", "carol", "I'll bring food for Saturday night."),
    ("trip", "alice", "Leaving at 9 on Saturday. Meet at mine?"),
    ("direct", "alice", "Thanks!"),
    ("trip", "bob", "Works for me."),
]

# (reader, conversation, read up to seq; None = everything). Sending already marks the
# sender's conversation read up to that message, so what is left unread after these is: for
# Bob, Alice's "Thanks!" and Carol's lunch note; for Carol, the last two trip messages; for
# Dave, the two welcomes in #general. Alice has read everything.
READ_MARKS = [
    ("alice", "trip", None),
    ("alice", "general", None),
]


class Command(BaseCommand):
    help = "Create demo users, a direct chat, a group and a channel with history (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--force", action="store_true",
            help="Seed even though the database already has users and no demo data.",
        )

    def handle(self, *args, force: bool = False, **options):
        if not force and User.objects.exists() and not User.objects.filter(username__in=DEMO_USERS).exists():
            # The demo has accounts with published passwords, one of them a superuser.
            raise CommandError(
                "This database already has users and no demo data; refusing to add demo accounts "
                "with published passwords. Use --force if that is really what you want."
            )
        with transaction.atomic():
            users = {name: self._user(name, display_name, DEMO_PASSWORD) for name, display_name in DEMO_USERS.items()}
            self._user(ADMIN_USERNAME, "Parley Admin", ADMIN_PASSWORD, superuser=True)
            conversations = self._conversations(users)
            sent = 0
            for position, (where, sender, body) in enumerate(HISTORY, start=1):
                result = do_send_message(sender=users[sender], conversation_id=conversations[where].pk,
                                         client_msg_id=f"demo-{position}", body=body)
                sent += not result.duplicate
            for reader, where, seq in READ_MARKS:
                conversation = conversations[where]
                conversation.refresh_from_db(fields=["last_seq"])
                do_mark_read(user=users[reader], conversation_id=conversation.pk,
                             seq=conversation.last_seq if seq is None else seq)
        self.stdout.write(f"Demo data ready ({sent} new messages).")
        self._print_logins()

    def _user(self, username: str, display_name: str, password: str, *, superuser: bool = False) -> User:
        user, created = User.objects.get_or_create(
            username=username,
            defaults={"display_name": display_name, "is_staff": superuser, "is_superuser": superuser},
        )
        # Only fix what is off, so a second run writes nothing (a new hash would differ by salt).
        if created or not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        if superuser and not (user.is_staff and user.is_superuser):
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        return user

    def _conversations(self, users: dict[str, User]) -> dict[str, Conversation]:
        alice = users["alice"]
        direct = do_get_or_create_direct(creator=alice, other_user_id=users["bob"].pk).conversation
        trip = Conversation.objects.filter(kind=Conversation.Kind.GROUP, title=GROUP_TITLE, created_by=alice).first()
        if trip is None:
            trip = do_create_group(creator=alice, title=GROUP_TITLE,
                                   member_ids=[users["bob"].pk, users["carol"].pk]).conversation
        general = Conversation.objects.filter(kind=Conversation.Kind.CHANNEL, title=CHANNEL_TITLE, public=True).first()
        if general is None:
            general = do_create_group(creator=alice, title=CHANNEL_TITLE, member_ids=[],
                                      kind=Conversation.Kind.CHANNEL, public=True).conversation
        # A default channel: everyone who signs up later joins it too (messaging.accounts.do_signup).
        Conversation.objects.filter(pk=general.pk, is_default=False).update(is_default=True)
        for name in ("bob", "carol", "dave"):
            do_join_channel(user=users[name], conversation_id=general.pk)
        return {"direct": direct, "trip": trip, "general": general}

    def _print_logins(self) -> None:
        self.stdout.write("")
        self.stdout.write("Demo logins:")
        for name in DEMO_USERS:
            self.stdout.write(f"  {name:<8} password {DEMO_PASSWORD}")
        self.stdout.write(f"  {ADMIN_USERNAME:<8} password {ADMIN_PASSWORD}   (superuser, /admin/)")
