"""The admin as the issue asks (issue 14, item 6): flags by their reported text, users beside
groups under Authentication, and no deleting conversations, messages or flags."""
from __future__ import annotations

import pytest
from django.contrib import admin

from messaging.models import Conversation, Flag, Message, User
from messaging.moderation import do_flag_message, do_resolve_flag

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, make_user):
    user = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def test_users_are_listed_under_authentication_beside_groups(staff_client):
    apps = {app["app_label"]: [m["object_name"] for m in app["models"]]
            for app in staff_client.get("/admin/").context["app_list"]}
    assert apps["auth"] == ["Group", "User"]
    assert "User" not in apps["messaging"]
    assert staff_client.get("/admin/auth/").status_code == 200


def test_flags_are_listed_by_the_text_reported_also_after_removal(staff_client, make_user, make_group,
                                                                 make_moderator):
    from messaging.send import do_send_message

    sender, reporter = make_user("sam"), make_user("rae")
    group = make_group(sender, [reporter], title="club")
    message = do_send_message(sender=sender, conversation_id=group.pk, client_msg_id="k", body="cheap watches").message
    flag = do_flag_message(reporter=reporter, message_id=message.pk, reason="spam")
    assert b"cheap watches" in staff_client.get("/admin/messaging/flag/").content
    do_resolve_flag(moderator=make_moderator("mod"), flag_id=flag.pk, action="remove_message")
    page = staff_client.get("/admin/messaging/flag/").content
    assert b"cheap watches" in page and f"#{message.seq} in".encode() not in page


@pytest.mark.parametrize("model", [Conversation, Message, Flag])
def test_the_admin_offers_no_deleting_of_conversations_messages_or_flags(rf, model):
    request = rf.get("/admin/")
    request.user = User(is_staff=True, is_superuser=True)
    assert admin.site._registry[model].has_delete_permission(request) is False
