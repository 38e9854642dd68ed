"""Read and delivered marks, the members' receipts, and who got a message (CONTRACT, "Messages").

Thin edges over the receipts app: the watermarks only move forward (receipts.watermarks).
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.access import access_membership
from receipts.info import access_message_info, message_info
from receipts.watermarks import Watermarks, do_mark_delivered, do_mark_read, receipts_of

from .common import AUTH_ERRORS, CONVERSATION_ID, AuthenticatedRequest, E, id_param
from .fields import parse
from .serializers import (
    DeliveredSerializer,
    MessageInfoSerializer,
    ReadSerializer,
    ReceiptsSerializer,
    WatermarksSerializer,
)


def _watermarks(marks: Watermarks) -> dict[str, int]:
    return {"delivered_seq": marks.delivered_seq, "read_seq": marks.read_seq}


class ReadView(APIView):
    @extend_schema(operation_id="conversations_read", parameters=[CONVERSATION_ID], request=ReadSerializer,
                   responses={200: WatermarksSerializer, 400: E, 404: E, **AUTH_ERRORS},
                   description="You have read everything up to seq (watermarks never move back).")
    def post(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        data = parse(ReadSerializer, request.data)
        return Response(_watermarks(do_mark_read(user=request.user, conversation_id=conversation_id,
                                                 seq=data["seq"])))


class DeliveredView(APIView):
    @extend_schema(operation_id="conversations_delivered", parameters=[CONVERSATION_ID],
                   request=DeliveredSerializer,
                   responses={200: WatermarksSerializer, 400: E, 404: E, **AUTH_ERRORS},
                   description="The device holds everything up to seq (for clients without a socket).")
    def post(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        data = parse(DeliveredSerializer, request.data)
        marks = do_mark_delivered(user=request.user, conversation_id=conversation_id, seq=data["seq"],
                                  device_id=data["device"])
        return Response(_watermarks(marks))


class ReceiptsView(APIView):
    @extend_schema(operation_id="conversations_receipts", parameters=[CONVERSATION_ID],
                   responses={200: ReceiptsSerializer, 404: E, **AUTH_ERRORS})
    def get(self, request: AuthenticatedRequest, conversation_id: int) -> Response:
        membership = access_membership(request.user, conversation_id)
        return Response({"members": receipts_of(membership.conversation)})


class MessageInfoView(APIView):
    @extend_schema(
        operation_id="messages_info", parameters=[id_param("message_id", "message")],
        responses={200: MessageInfoSerializer, 404: E, **AUTH_ERRORS},
        description="Who got and read a message: for its sender and moderators. Other members get 403.",
    )
    def get(self, request: AuthenticatedRequest, message_id: int) -> Response:
        return Response(message_info(access_message_info(request.user, message_id)))
