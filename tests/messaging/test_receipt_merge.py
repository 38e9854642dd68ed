"""The receipt merge, one SQL statement each (messaging.models.MembershipManager.raise_marks,
receipts.models.DeviceCursorManager.raise_cursors): marks only rise, read never passes
delivered, and only what advanced is reported."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import Membership
from receipts.models import DeviceCursor

pytestmark = pytest.mark.django_db


@pytest.fixture
def members(make_user, make_group):
    alice, bob, carol = make_user(), make_user(), make_user()
    group = make_group(alice, [bob, carol])
    return group, {m.user_id: m.pk for m in Membership.objects.filter(conversation=group)}, (alice, bob, carol)


def marks(pk: int) -> tuple[int, int]:
    return Membership.objects.values_list("delivered_seq", "read_seq").get(pk=pk)


def test_raising_many_members_is_one_statement_that_reports_only_the_advances(members):
    _, pks, (alice, bob, carol) = members
    Membership.objects.raise_marks({pks[carol.pk]: (5, 0)})
    with CaptureQueriesContext(connection) as queries:
        advanced = Membership.objects.raise_marks({pks[alice.pk]: (3, 1), pks[bob.pk]: (2, 2), pks[carol.pk]: (4, 0)})
    assert len(queries) == 1
    assert advanced == {pks[alice.pk]: (3, 1), pks[bob.pk]: (2, 2)}  # carol is already at 5
    assert marks(pks[carol.pk]) == (5, 0)


def test_a_stale_proposal_never_lowers_a_mark(members):
    _, pks, (alice, _, _) = members
    Membership.objects.raise_marks({pks[alice.pk]: (9, 7)})
    assert Membership.objects.raise_marks({pks[alice.pk]: (4, 3)}) == {}
    assert marks(pks[alice.pk]) == (9, 7)


def test_reading_raises_delivered_to_at_least_read(members):
    _, pks, (alice, _, _) = members
    assert Membership.objects.raise_marks({pks[alice.pk]: (0, 6)}) == {pks[alice.pk]: (6, 6)}


def test_device_cursors_rise_in_one_statement_and_never_fall(members, make_device):
    group, _, (alice, _, _) = members
    phone, laptop = make_device(alice, "phone"), make_device(alice, "laptop")
    with CaptureQueriesContext(connection) as queries:
        DeviceCursor.objects.raise_cursors({(group.pk, phone.pk): 4, (group.pk, laptop.pk): 2})
    assert len(queries) == 1
    DeviceCursor.objects.raise_cursors({(group.pk, phone.pk): 3, (group.pk, str(laptop.pk)): 5})
    assert DeviceCursor.objects.of_device(phone.pk) == {group.pk: 4}
    assert DeviceCursor.objects.of_device(laptop.pk) == {group.pk: 5}
