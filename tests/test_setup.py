"""The operator surface: the admin over real data, and the demo data `make run` loads."""
from __future__ import annotations

import io

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from messaging.models import Conversation, Device, Flag, Membership, Message, User
from messaging.payloads import conversation_payload
from messaging.send import do_send_message
from receipts.models import DeviceCursor
from receipts.watermarks import do_mark_delivered

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Each demo login is hashed and checked; the production hasher would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _one_of_each(make_user, make_device, make_group) -> dict:
    """One row of every model, made the way clients make them."""
    alice, bob = make_user(display_name="Alice"), make_user()
    group = make_group(alice, [bob], title="Planning")
    phone = make_device(bob, name="phone")
    message = do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="k1", body="hello").message
    do_mark_delivered(user=bob, conversation_id=group.pk, seq=1, device_id=phone.pk)
    return {
        User: alice,
        Conversation: group,
        Membership: Membership.objects.get(conversation=group, user=bob),
        Device: phone,
        Message: message,
        Flag: Flag.objects.create(message=message, reporter=bob, reason=Flag.Reason.SPAM),
        DeviceCursor: DeviceCursor.objects.get(device=phone),
    }


@pytest.fixture
def stored(make_user, make_device, make_group):
    return _one_of_each(make_user, make_device, make_group)


MODELS = [User, Conversation, Membership, Device, Message, Flag, DeviceCursor]
REGISTERED = sorted(admin.site._registry, key=lambda m: m._meta.label)


def test_every_parley_model_has_an_admin():
    parley_models = [m for app in ("messaging", "receipts", "notifications")
                     for m in apps.get_app_config(app).get_models()]
    assert [m._meta.label for m in parley_models if m not in admin.site._registry] == []


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_every_admin_list_loads_with_data_present(admin_client, stored, model):
    assert admin_client.get(_admin_url(model, "changelist")).status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_admin_lists_and_shows_each_messaging_model(admin_client, stored, model):
    obj = stored[model]
    listing = admin_client.get(_admin_url(model, "changelist"))
    assert listing.status_code == 200
    assert _admin_url(model, "change", obj.pk) in listing.content.decode()
    assert admin_client.get(_admin_url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_an_admin_list_costs_the_same_queries_however_many_rows_it_shows(
        admin_client, stored, make_user, make_device, make_group, model):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(_admin_url(model, "changelist")).status_code == 200
        return len(captured)

    few = queries()
    for _ in range(3):
        _one_of_each(make_user, make_device, make_group)
    assert queries() == few


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("term", ["hello", "42", "not-a-number"])
def test_an_admin_search_for_any_text_answers(admin_client, stored, model, term):
    assert admin_client.get(_admin_url(model, "changelist"), {"q": term}).status_code == 200


def test_a_conversations_messages_are_one_click_away(admin_client, stored, make_user, make_group):
    other = make_group(make_user(), title="Elsewhere")
    do_send_message(sender=other.created_by, conversation_id=other.pk, client_msg_id="k2", body="not here")
    page = admin_client.get(_admin_url(Conversation, "change", stored[Conversation].pk)).content.decode()
    link = f'{_admin_url(Message, "changelist")}?conversation__exact={stored[Conversation].pk}'
    assert link in page
    listing = admin_client.get(link).content.decode()
    assert "hello" in listing and "not here" not in listing


def test_seqs_and_watermarks_are_shown_but_not_editable(admin_client, stored):
    conversation_page = admin_client.get(_admin_url(Conversation, "change", stored[Conversation].pk)).content.decode()
    assert 'name="title"' in conversation_page
    for field in ("last_seq", "member_count", "kind", "memberships-0-read_seq", "memberships-0-delivered_seq"):
        assert f'name="{field}"' not in conversation_page
    message_page = admin_client.get(_admin_url(Message, "change", stored[Message].pk)).content.decode()
    assert "hello" in message_page
    assert 'name="seq"' not in message_page and 'name="body"' not in message_page


def test_saving_a_conversation_in_the_admin_cannot_move_its_counters(admin_client, stored):
    conversation = stored[Conversation]
    memberships = list(Membership.objects.filter(conversation=conversation).order_by("id"))
    watermarks = [(m.delivered_seq, m.read_seq) for m in memberships]
    form = {
        "title": "Renamed", "public": "", "last_seq": "999", "member_count": "999",
        "memberships-TOTAL_FORMS": str(len(memberships)), "memberships-INITIAL_FORMS": str(len(memberships)),
        "memberships-MIN_NUM_FORMS": "0", "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, membership in enumerate(memberships):
        form |= {f"memberships-{i}-id": membership.pk, f"memberships-{i}-conversation": conversation.pk,
                 f"memberships-{i}-role": membership.role, f"memberships-{i}-read_seq": "999",
                 f"memberships-{i}-delivered_seq": "999"}
    response = admin_client.post(_admin_url(Conversation, "change", conversation.pk), form)
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert (conversation.title, conversation.last_seq, conversation.member_count) == ("Renamed", 1, 2)
    after = Membership.objects.filter(conversation=conversation).order_by("id")
    assert [(m.delivered_seq, m.read_seq) for m in after] == watermarks


def test_the_admin_refuses_to_add_change_or_delete_messages(admin_client, stored):
    message = stored[Message]
    assert admin_client.get(_admin_url(Message, "add")).status_code == 403
    assert admin_client.post(_admin_url(Message, "add"), {"body": "forged", "seq": 2}).status_code == 403
    assert admin_client.post(_admin_url(Message, "change", message.pk), {"body": "edited"}).status_code == 403
    assert admin_client.post(_admin_url(Message, "delete", message.pk), {"post": "yes"}).status_code == 403
    message.refresh_from_db()
    assert (message.body, Message.objects.count()) == ("hello", 1)


def test_conversations_and_memberships_are_not_made_in_the_admin(admin_client, stored):
    assert admin_client.get(_admin_url(Conversation, "add")).status_code == 403
    assert admin_client.get(_admin_url(Membership, "add")).status_code == 403
    assert admin_client.get(_admin_url(DeviceCursor, "add")).status_code == 403


# --- seed_demo -----------------------------------------------------------------------------

def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def _members(conversation: Conversation) -> set[str]:
    return set(conversation.memberships.values_list("user__username", flat=True))


def test_seed_demo_makes_the_advertised_logins_and_conversations():
    output = _seed()
    for name in ("alice", "bob", "carol", "dave"):
        assert authenticate(username=name, password="parley-demo") is not None
        assert f"{name} " in output
    admin = authenticate(username="admin", password="parley-admin")
    assert admin is not None and admin.is_superuser and admin.is_staff
    assert "parley-admin" in output

    direct = Conversation.objects.get(kind=Conversation.Kind.DIRECT)
    trip = Conversation.objects.get(kind=Conversation.Kind.GROUP, title="Weekend trip")
    general = Conversation.objects.get(kind=Conversation.Kind.CHANNEL, title="general")
    assert _members(direct) == {"alice", "bob"}
    assert _members(trip) == {"alice", "bob", "carol"}
    assert _members(general) == {"alice", "bob", "carol", "dave"} and general.public
    assert [c.member_count for c in (direct, trip, general)] == [2, 3, 4]
    assert all(c.last_seq >= 3 for c in (direct, trip, general))


def test_seed_demo_leaves_some_messages_unread_like_a_real_inbox():
    _seed()
    trip = Conversation.objects.get(title="Weekend trip")
    unread = {
        m.user.username: conversation_payload(trip, m)["me"]["unread"]
        for m in trip.memberships.select_related("user")
    }
    assert unread["alice"] == 0 and unread["carol"] > 0


def test_seed_demo_sends_through_the_write_path_with_gap_free_seqs():
    _seed()
    for conversation in Conversation.objects.all():
        seqs = list(conversation.messages.order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, conversation.last_seq + 1))
        for membership in conversation.memberships.all():
            assert 0 <= membership.read_seq <= membership.delivered_seq <= conversation.last_seq
    assert set(Message.objects.values_list("client_msg_id", flat=True)) == {
        f"demo-{n}" for n in range(1, Message.objects.count() + 1)
    }


def test_seed_demo_twice_changes_nothing():
    def snapshot():
        return (
            list(User.objects.order_by("pk").values()),
            list(Conversation.objects.order_by("pk").values()),
            list(Membership.objects.order_by("pk").values()),
            list(Message.objects.order_by("pk").values()),
        )

    _seed()
    before = snapshot()
    output = _seed()
    assert snapshot() == before
    assert "0 new messages" in output


def test_seed_demo_refuses_a_database_that_has_other_users(make_user):
    make_user("someone-real")
    with pytest.raises(CommandError, match="--force"):
        _seed()
    assert not User.objects.filter(username="admin").exists()
    call_command("seed_demo", "--force", stdout=io.StringIO())
    assert User.objects.filter(username="admin", is_superuser=True).exists()
