"""Messages: send and page through a conversation (CONTRACT, "Messages").

Sending reaches the same use case as the WebSocket ``send`` frame (messaging.send).
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging import selectors
from messaging.access import access_conversation, access_device
from messaging.payloads import message_payload
from messaging.send import do_send_message

from .common import AUTH_ERRORS, CONVERSATION_ID, AuthenticatedRequest, E
from .fields import parse
from .serializers import (
    MessagePageSerializer,
    MessagesQuerySerializer,
    SendMessageResponseSerializer,
    SendMessageSerializer,
)


class MessagesView(APIView):
    @extend_schema(
        operation_id="conversations_messages_list", parameters=[CONVERSATION_ID, MessagesQuerySerializer],
        responses={200: MessagePageSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="A page in ascending seq: after `after_seq` (default 0) or just before `before_seq`.",
    )
    def get(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        query = parse(MessagesQuerySerializer, request.query_params)
        conversation, _membership = access_conversation(request.user, conversation_id)
        limit = selectors.clamp_limit(query.get("limit"))
        if "before_seq" in query:
            messages, has_more = selectors.messages_before(conversation.pk, query["before_seq"], limit)
        else:
            messages, has_more = selectors.messages_after(conversation.pk, query.get("after_seq", 0), limit)
        return Response({"messages": [message_payload(m) for m in messages], "has_more": has_more})

    @extend_schema(
        operation_id="conversations_messages_send", parameters=[CONVERSATION_ID],
        request=SendMessageSerializer,
        responses={201: SendMessageResponseSerializer, 200: SendMessageResponseSerializer, 400: E, 404: E,
                   409: E, 429: E, **AUTH_ERRORS},
        description="Send (201). A retry with the same client_msg_id returns the stored message (200, "
                    "duplicate: true); the same client_msg_id with another body or conversation is a 409. "
                    "Over the send rate or the conversation's slow mode: 429 with Retry-After; a "
                    "suspended sender: 403.",
    )
    def post(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        data = parse(SendMessageSerializer, request.data)
        device = access_device(request.user, data["device"]) if "device" in data else None
        result = do_send_message(sender=request.user, conversation_id=conversation_id,
                                 client_msg_id=data["client_msg_id"], body=data["body"], device=device)
        return Response({"message": result.payload, "duplicate": result.duplicate},
                        status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED)
