"""The user directory: ``GET /api/v1/users?search=`` (CONTRACT, "Conversations")."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.accounts import search_users
from messaging.payloads import user_payload

from .common import AUTH_ERRORS, AuthenticatedRequest, E
from .fields import parse
from .serializers import UserSearchQuerySerializer, UserSearchResponseSerializer


class UserSearchView(APIView):
    @extend_schema(operation_id="users_search", parameters=[UserSearchQuerySerializer],
                   responses={200: UserSearchResponseSerializer, 400: E, **AUTH_ERRORS},
                   description="Active users (not you) whose username or display name contains `search`.")
    def get(self, request: AuthenticatedRequest) -> Response:
        query = parse(UserSearchQuerySerializer, request.query_params)
        users = search_users(query=query.get("search", ""), viewer=request.user,
                             limit=settings.PARLEY_USER_SEARCH_LIMIT)
        return Response({"results": [user_payload(u) for u in users]})
