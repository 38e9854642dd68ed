"""Message search (messaging.search; issue 13 item 2): scoped to the conversations a user is in
now, never deleted or removed text, highlights that carry no markup but <mark>, newest first
by a cursor, and on PostgreSQL through the GIN index."""
from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.changes import do_delete_message
from messaging.conversations import do_remove_member
from messaging.errors import Invalid, NotFound
from messaging.models import Message
from messaging.moderation import do_flag_message, do_resolve_flag
from messaging.search import marked_html, search_messages
from messaging.send import do_send_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(make_user, make_group):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    return alice, bob, carol, make_group(alice, [bob, carol], title="Team")


def send(sender, conversation, body):
    return do_send_message(sender=sender, conversation_id=conversation.pk,
                           client_msg_id=f"k{Message.objects.count()}", body=body).message


def found(user, query, **kw):
    return [hit.message.body for hit in search_messages(user=user, query=query, **kw).hits]


def test_a_word_finds_the_messages_holding_it_newest_first(chat):
    alice, bob, _carol, team = chat
    send(alice, team, "The deploy is at noon")
    send(bob, team, "lunch anyone?")
    send(bob, team, "deploy went fine")
    assert found(alice, "deploy") == ["deploy went fine", "The deploy is at noon"]
    assert found(bob, "lunch") == ["lunch anyone?"]


def test_the_highlight_marks_the_match_and_escapes_everything_else(chat):
    alice, bob, _carol, team = chat
    send(alice, team, 'Check <script>alert("x")</script> & if 1 < 2 the release notes')
    (hit,) = search_messages(user=bob, query="release").hits
    assert "<mark>release</mark>" in hit.highlight
    # ts_headline drops what its parser takes for tags; whatever is left is escaped text.
    assert set(re.findall(r"<[^>]*>", hit.highlight)) == {"<mark>", "</mark>"}
    assert "&amp;" in hit.highlight and "1 &lt; 2" in hit.highlight


def test_markers_typed_into_a_body_cannot_forge_markup(chat):
    alice, bob, _carol, team = chat
    send(alice, team, "release \ue000<img src=x onerror=alert(1)>\ue001 notes")
    (hit,) = search_messages(user=bob, query="notes").hits
    assert "<img" not in hit.highlight and "&lt;img" in hit.highlight
    assert hit.highlight.count("<mark>") == hit.highlight.count("</mark>") >= 1


def test_marked_html_allows_only_balanced_marks():
    assert marked_html("a \ue000b\ue001 <i>") == "a <mark>b</mark> &lt;i&gt;"
    assert marked_html("\ue001stray\ue000open") == "stray<mark>open</mark>"


def test_nothing_of_a_conversation_left_is_found_though_it_was_seen(chat, make_group):
    alice, bob, carol, team = chat
    send(alice, team, "the secret plan is ready")
    elsewhere = make_group(carol, [bob], title="Other")
    send(carol, elsewhere, "another secret")
    assert found(bob, "secret") == ["another secret", "the secret plan is ready"]

    do_remove_member(actor=bob, conversation_id=team.pk, user_id=bob.pk)  # bob leaves
    assert found(bob, "secret") == ["another secret"]
    with pytest.raises(NotFound):
        search_messages(user=bob, query="secret", conversation_id=team.pk)

    do_remove_member(actor=carol, conversation_id=elsewhere.pk, user_id=bob.pk)  # bob is removed
    assert found(bob, "secret") == []
    assert found(alice, "secret") == ["the secret plan is ready"]


def test_deleted_and_removed_messages_are_never_found_nor_their_words_shown(chat, make_moderator):
    alice, bob, carol, team = chat
    keep = send(alice, team, "budget review on friday")
    deleted = send(bob, team, "budget is 12k, confidential")
    removed = send(carol, team, "budget insult here")
    do_delete_message(actor=bob, message_id=deleted.pk)
    flag = do_flag_message(reporter=alice, message_id=removed.pk, reason="abuse")
    do_resolve_flag(moderator=make_moderator(), flag_id=flag.pk, action="remove_message")

    for user in (alice, bob, carol):
        hits = search_messages(user=user, query="budget").hits
        assert [hit.message.pk for hit in hits] == [keep.pk]
        assert all("confidential" not in hit.highlight and "insult" not in hit.highlight for hit in hits)
    assert found(alice, "confidential") == [] and found(alice, "insult") == []


def test_pages_follow_the_cursor_newest_first_without_repeats(chat):
    alice, bob, _carol, team = chat
    sent = [send(alice if n % 2 else bob, team, f"status report number {n}") for n in range(5)]
    ids = [m.pk for m in reversed(sent)]

    pages, before = [], None
    while True:
        page = search_messages(user=alice, query="report", before=before, limit=2)
        pages.append(([hit.message.pk for hit in page.hits], page.has_more))
        if not page.has_more:
            break
        before = page.hits[-1].message.pk
    assert pages == [(ids[0:2], True), (ids[2:4], True), (ids[4:5], False)]


def test_one_conversation_only_when_asked(chat, make_group):
    alice, bob, _carol, team = chat
    other = make_group(alice, [bob], title="Other")
    send(alice, team, "standup notes")
    send(alice, other, "standup moved")
    assert found(bob, "standup", conversation_id=other.pk) == ["standup moved"]


@pytest.mark.parametrize("bad", [{"query": ""}, {"query": "   "}, {"query": 5}, {"query": "x" * 201},
                                 {"query": "a", "before": 0}, {"query": "a", "before": "7"}])
def test_bad_queries_are_refused(chat, bad):
    alice = chat[0]
    with pytest.raises(Invalid):
        search_messages(user=alice, **bad)


@pytest.mark.postgres
def test_web_search_syntax_and_stemming_on_postgresql(chat):
    alice, bob, _carol, team = chat
    send(alice, team, "We are deploying the new build")
    send(alice, team, "the build failed again")
    assert found(bob, "deploy") == ["We are deploying the new build"]  # english stemming
    assert found(bob, "build -failed") == ["We are deploying the new build"]
    assert found(bob, '"build failed"') == ["the build failed again"]
    assert found(bob, "the") == []  # only a stop word: nothing to look for, and no error


@pytest.mark.postgres
@pytest.mark.parametrize("large_from", [5000, 10**9], ids=["a branch per conversation", "one branch for all"])
def test_the_search_uses_the_gin_index_probed_per_conversation(chat, make_group, settings, large_from):
    """Over enough rows for the planner to prefer it (on a handful it rightly reads the table):
    60,000 messages of varied words in three conversations, of which the searcher is in two,
    and a rare word. The plan must reach the messages through ``message_search``, the GIN
    index probed with each of the searcher's conversations, not by reading the table or a
    conversation's every row."""
    settings.PARLEY_SEARCH_LARGE_CONVERSATION_MESSAGES = large_from
    alice, bob, _carol, team = chat
    send(alice, team, "the quarterly zeppelin forecast")
    conversations = [team, make_group(alice, [bob], title="b"), make_group(alice, [], title="c")]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO messaging_message (conversation_id, seq, sender_id, client_msg_id, body, created_at, state,
                                           version, html, mention_ids, reactions, attachments)
            SELECT c.id, 1000 + n, %s, 'bulk-' || c.id || '-' || n,
                   'chatter w' || (n * 7919 %% 3001) || ' w' || (n * 104729 %% 1009) || ' about lunch', now(),
                   'visible', 0, '', '[]', '[]', '[]'
            FROM unnest(%s::bigint[]) AS c(id), generate_series(1, 20000) AS n
            """,
            [alice.pk, [c.pk for c in conversations]],
        )
        cursor.execute("UPDATE messaging_conversation SET last_seq = 21000 WHERE id = ANY(%s)",
                       [[c.pk for c in conversations]])
        cursor.execute("ANALYZE messaging_message")
        cursor.execute("ANALYZE messaging_membership")

    with CaptureQueriesContext(connection) as queries:
        assert found(bob, "zeppelin") == ["the quarterly zeppelin forecast"]
        assert len(found(bob, "lunch")) == 20  # a common word: a page, newest first, whatever the plan
    (search_sql, _common) = [q["sql"] for q in queries.captured_queries if "search_vector @@" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {search_sql}")
        plan = cursor.fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    nodes = list(_walk(plan[0]["Plan"]))
    assert any(node.get("Index Name") == "message_search" for node in nodes), json.dumps(plan, indent=1)
    assert not any(node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "messaging_message"
                   for node in nodes)


def _walk(node):
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)
