"""Messages: send and page through a conversation, edit, delete and react (CONTRACT,
"Messages"; v1.1, "Editing, deleting, replying, reacting, mentioning" and "The change stream").

Sending reaches the same use case as the WebSocket ``send`` frame (messaging.send); every
change goes through messaging.changes, which numbers it on the conversation's change stream.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging import selectors
from messaging.access import access_conversation, access_device
from messaging.changes import do_delete_message, do_edit_message
from messaging.payloads import message_payload
from messaging.reactions import do_add_reaction, do_remove_reaction
from messaging.replay import change_page
from messaging.send import do_send_message

from .common import AUTH_ERRORS, CONVERSATION_ID, AuthenticatedRequest, E, id_param
from .fields import parse
from .serializers import (
    ChangePageSerializer,
    ChangesQuerySerializer,
    EditMessageSerializer,
    MessagePageSerializer,
    MessageSerializer,
    MessagesQuerySerializer,
    ReactionSerializer,
    SendMessageResponseSerializer,
    SendMessageSerializer,
)

MESSAGE_ID = id_param("message_id", "message")


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
                    "duplicate: true); the same client_msg_id with another body, conversation or reply_to "
                    "is a 409. `reply_to` must be a message of this conversation that is not deleted (400). "
                    "`attachments`: ids of your uploads not sent yet, at most PARLEY_MAX_ATTACHMENTS_PER_MESSAGE "
                    "(10), else 400; with attachments the body may be empty. "
                    "Over the send rate or the conversation's slow mode: 429 with Retry-After; a "
                    "suspended sender: 403.",
    )
    def post(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        data = parse(SendMessageSerializer, request.data)
        device = access_device(request.user, data["device"]) if "device" in data else None
        result = do_send_message(sender=request.user, conversation_id=conversation_id,
                                 client_msg_id=data["client_msg_id"], body=data["body"], device=device,
                                 reply_to=data.get("reply_to"), attachments=data.get("attachments"))
        return Response({"message": result.payload, "duplicate": result.duplicate},
                        status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED)


class ChangesView(APIView):
    @extend_schema(
        operation_id="conversations_changes_list", parameters=[CONVERSATION_ID, ChangesQuerySerializer],
        responses={200: ChangePageSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="The change stream in ascending `change` after `after` (default 0), each record with its "
                    "message as it is now; at most 200 per page.",
    )
    def get(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        query = parse(ChangesQuerySerializer, request.query_params)
        conversation, _membership = access_conversation(request.user, conversation_id)
        page = change_page(conversation_id=conversation.pk, after=query.get("after", 0),
                           limit=selectors.clamp_limit(query.get("limit")))
        return Response({"changes": page.changes, "has_more": page.has_more})


class MessageView(APIView):
    @extend_schema(
        operation_id="messages_edit", parameters=[MESSAGE_ID], request=EditMessageSerializer,
        responses={200: MessageSerializer, 400: E, 404: E, 409: E, 429: E, **AUTH_ERRORS},
        description="The sender edits within PARLEY_EDIT_WINDOW_SECONDS (default 24 h; 403 after it, and "
                    "for anyone else). A removed or deleted message is a 409. The body it already has "
                    "changes nothing.",
    )
    def patch(self, request: AuthenticatedRequest, message_id: int) -> Response:
        data = parse(EditMessageSerializer, request.data)
        return Response(do_edit_message(editor=request.user, message_id=message_id, body=data["body"]))

    @extend_schema(
        operation_id="messages_delete", parameters=[MESSAGE_ID], request=None,
        responses={200: MessageSerializer, 404: E, 429: E, **AUTH_ERRORS},
        description="The sender, or a moderator, deletes: `state: deleted`, and the text is gone from every "
                    "API, frame, replay page, push and search. Deleting it again changes nothing.",
    )
    def delete(self, request: AuthenticatedRequest, message_id: int) -> Response:
        return Response(do_delete_message(actor=request.user, message_id=message_id))


class ReactionsView(APIView):
    @extend_schema(
        operation_id="messages_reactions_add", parameters=[MESSAGE_ID], request=ReactionSerializer,
        responses={200: MessageSerializer, 400: E, 404: E, 409: E, 429: E, **AUTH_ERRORS},
        description="React with one emoji (or a :short_name:). A reaction you already have changes nothing; "
                    "a message takes at most PARLEY_MAX_REACTIONS_PER_MESSAGE (20) different ones (409).",
    )
    def post(self, request: AuthenticatedRequest, message_id: int) -> Response:
        data = parse(ReactionSerializer, request.data)
        return Response(do_add_reaction(user=request.user, message_id=message_id, emoji=data["emoji"]))


class ReactionView(APIView):
    @extend_schema(
        operation_id="messages_reactions_remove", parameters=[MESSAGE_ID], request=None,
        responses={200: MessageSerializer, 400: E, 404: E, 409: E, 429: E, **AUTH_ERRORS},
        description="Take your reaction back (the emoji URL-encoded, or a :short_name:); one you do not have "
                    "changes nothing.",
    )
    def delete(self, request: AuthenticatedRequest, message_id: int, emoji: str) -> Response:
        return Response(do_remove_reaction(user=request.user, message_id=message_id, emoji=emoji))
