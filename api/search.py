"""Message search (CONTRACT v1.1, "Search"): a thin edge over messaging.search."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.payloads import message_payload
from messaging.search import search_conversation_ref, search_messages

from .common import AUTH_ERRORS, AuthenticatedRequest, E
from .fields import parse
from .serializers import SearchPageSerializer, SearchQuerySerializer


class SearchView(APIView):
    @extend_schema(
        operation_id="search_messages", parameters=[SearchQuerySerializer],
        responses={200: SearchPageSerializer, 400: E, 404: E, 429: E, **AUTH_ERRORS},
        description="Your messages matching `q`, newest first, in conversations you are a member of now; "
                    "never deleted or removed ones. Page on with `before` = the last result's message id "
                    "while `has_more`. `conversation` that is not yours: 404. Over PARLEY_RATE_SEARCH: 429.",
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        query = parse(SearchQuerySerializer, request.query_params)
        page = search_messages(user=request.user, query=query["q"], conversation_id=query.get("conversation"),
                               before=query.get("before"), limit=query.get("limit"))
        return Response({
            "results": [{"message": message_payload(hit.message), "conversation": search_conversation_ref(hit.message),
                         "highlight": hit.highlight} for hit in page.hits],
            "has_more": page.has_more,
        })
