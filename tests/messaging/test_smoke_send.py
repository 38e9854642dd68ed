from messaging.send import do_send_message


def test_first_send_gets_seq_one_and_a_retry_returns_it(make_user, make_group):
    alice, bob = make_user(), make_user()
    group = make_group(alice, [bob])
    first = do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="k1", body="hi")
    again = do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="k1", body="hi")
    assert (first.message.seq, first.duplicate) == (1, False)
    assert (again.message.pk, again.duplicate) == (first.message.pk, True)
