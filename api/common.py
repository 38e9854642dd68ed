"""What every REST endpoint shares: the authenticated request, path ids, pagination, error shapes."""
from __future__ import annotations

from typing import Any, Sequence

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.views import APIView

from messaging.models import User

from .fields import ErrorSerializer


class AuthenticatedRequest(Request):
    """A request past DRF's ``IsAuthenticated`` (the default permission): its user is a real one."""

    user: User


# Ids in paths are at most 18 digits (api.urls), which every database stores.
MAX_PATH_ID = 10**18 - 1
_ID_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_PATH_ID}


def id_param(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(name, _ID_SCHEMA, OpenApiParameter.PATH, description=f"The {what}'s id.")


CONVERSATION_ID = id_param("conversation_id", "conversation")
E = ErrorSerializer
# The failures every authenticated endpoint can answer with.
AUTH_ERRORS = {401: E, 403: E}


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``{count, next, previous, results}``; ``limit`` above PARLEY_PAGE_SIZE_MAX is capped."""

    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return settings.PARLEY_PAGE_SIZE_MAX

    def get_offset(self, request: Request) -> int:
        # A huge offset would overflow the database's integer; past any count it is just "the end".
        return min(super().get_offset(request), MAX_PATH_ID)


class ConversationPagination(BoundedLimitOffsetPagination):
    @property
    def default_limit(self) -> int:  # type: ignore[override]
        return settings.PARLEY_CONVERSATIONS_PAGE_SIZE


class MemberPagination(BoundedLimitOffsetPagination):
    """One page holds a whole group of up to PARLEY_PAGE_SIZE_MAX members; channels page on."""

    @property
    def default_limit(self) -> int:  # type: ignore[override]
        return settings.PARLEY_PAGE_SIZE_MAX


def paginate(paginator: LimitOffsetPagination, items: QuerySet[Any] | Sequence[Any], request: Request,
             view: APIView) -> list[Any]:
    """One page of ``items`` (these paginators always have a limit, so there is always a page)."""
    page: list[Any] | None = paginator.paginate_queryset(items, request, view=view)  # type: ignore[arg-type]
    assert page is not None
    return page
