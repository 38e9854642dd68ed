"""Who may do what in a conversation: the one table of the roles (CONTRACT v1.1,
"Conversation settings and management"; docs/api.md, "Roles").

=================== ======= ======= ======== =============================================
action              owner   admin   member   notes
=================== ======= ======= ======== =============================================
``add_members``     yes     yes     no       public channels: anyone joins by themselves
``remove_member``   yes     yes     no       only someone of a lower role than the actor
``edit``            yes     yes     no       title and topic
``set_role``        yes     no      no       admin or member, of someone else
``leave``           yes     yes     yes      an owner's ownership passes on (conversations)
=================== ======= ======= ======== =============================================

A direct conversation has exactly its two members and no title: none of these apply there.
The use cases (messaging.conversations) call :func:`require`; the conversation object tells
a member what it may do (``me.can``, from :func:`allowed`), so clients never re-derive it.
"""
from __future__ import annotations

from enum import StrEnum

from .errors import Forbidden
from .models import Conversation, Membership

Role = Membership.Role


class Action(StrEnum):
    ADD_MEMBERS = "add_members"
    REMOVE_MEMBER = "remove_member"
    EDIT = "edit"
    SET_ROLE = "set_role"
    LEAVE = "leave"


ALLOWED: dict[Action, frozenset[str]] = {
    Action.ADD_MEMBERS: frozenset({Role.OWNER, Role.ADMIN}),
    Action.REMOVE_MEMBER: frozenset({Role.OWNER, Role.ADMIN}),
    Action.EDIT: frozenset({Role.OWNER, Role.ADMIN}),
    Action.SET_ROLE: frozenset({Role.OWNER}),
    Action.LEAVE: frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER}),
}

# Higher outranks lower: a removal needs a strictly higher role than the one removed.
RANK = {Role.OWNER: 3, Role.ADMIN: 2, Role.MEMBER: 1}

_REFUSALS = {
    Action.ADD_MEMBERS: "only owners and admins add members",
    Action.REMOVE_MEMBER: "only owners and admins remove other members",
    Action.EDIT: "only owners and admins change the title and topic",
    Action.SET_ROLE: "only the owner changes roles",
    Action.LEAVE: "you cannot leave this conversation",
}


def may(membership: Membership, action: Action, conversation: Conversation | None = None) -> bool:
    conversation = conversation or membership.conversation
    return not conversation.is_direct and membership.role in ALLOWED[action]


def allowed(membership: Membership, conversation: Conversation | None = None) -> list[str]:
    """What the member may do here, for the conversation object's ``me.can``."""
    return [action.value for action in Action if may(membership, action, conversation)]


def require(membership: Membership, action: Action, *, target: Membership | None = None) -> None:
    """Raise :class:`Forbidden` unless the member may do ``action`` (to ``target``, a member)."""
    if membership.conversation.is_direct:
        raise Forbidden("a direct conversation has exactly two members and no settings")
    if membership.role not in ALLOWED[action]:
        raise Forbidden(_REFUSALS[action])
    if action is Action.REMOVE_MEMBER and target is not None and RANK[Role(target.role)] >= RANK[Role(membership.role)]:
        raise Forbidden("you can only remove members whose role is below yours")
    if action is Action.SET_ROLE and target is not None and target.user_id == membership.user_id:
        raise Forbidden("you cannot change your own role")
