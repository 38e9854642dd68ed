"""GET /api/v1/channels: the public channel directory."""
from messaging.conversations import do_create_group, do_join_channel


def channel(owner, title, *, public=True, members=()):
    return do_create_group(creator=owner, title=title, member_ids=[m.pk for m in members], kind="channel",
                           public=public).conversation


def test_the_directory_lists_public_channels_biggest_first_and_never_private_ones(api, make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    small = channel(alice, "Small talk")
    big = channel(alice, "Announcements", members=[bob])
    channel(alice, "Secret plans", public=False, members=[bob])
    do_create_group(creator=alice, title="A group", member_ids=[bob.pk])

    body = api.as_user(carol).get("/api/v1/channels").json()

    assert body["count"] == 2
    assert [c["id"] for c in body["results"]] == [big.pk, small.pk]
    assert [c["me"] for c in body["results"]] == [None, None]


def test_a_channel_i_joined_carries_my_membership(api, make_user):
    alice, bob = make_user(), make_user()
    general = channel(alice, "General")
    do_join_channel(user=bob, conversation_id=general.pk)

    [listed] = api.as_user(bob).get("/api/v1/channels").json()["results"]

    assert listed["me"]["role"] == "member"


def test_search_matches_part_of_the_title_ignoring_case(api, make_user):
    alice = make_user()
    channel(alice, "Python help")
    channel(alice, "Cooking")

    titles = [c["title"] for c in api.as_user(alice).get("/api/v1/channels?search=PYTH").json()["results"]]

    assert titles == ["Python help"]


def test_the_directory_needs_a_login(api):
    assert api.get("/api/v1/channels").status_code == 401
