"""REST endpoints for devices, conversations, members, messages and receipts (CONTRACT).

Thin edges: parse the request strictly (serializers), authorize with ``access_*``, delegate
to the use-case functions, render with the payload builders shared with the WebSocket
(messaging.payloads). A private conversation that is not yours is a 404, like one that does
not exist.
"""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging import presence, selectors
from messaging.access import access_conversation, access_device, access_membership
from messaging.accounts import search_users
from messaging.conversations import (
    do_add_members,
    do_create_group,
    do_get_or_create_direct,
    do_join_channel,
    do_remove_member,
)
from messaging.devices import do_register_device, do_remove_device
from messaging.fanout import is_large
from messaging.models import Conversation, Device, Membership
from messaging.moderation import do_flag_message
from messaging.payloads import conversation_payload, message_payload, user_payload
from messaging.send import do_send_message
from notifications.subscriptions import do_remove_push_subscription, do_save_push_subscription
from receipts.info import access_message_info, message_info
from receipts.watermarks import Watermarks, do_mark_delivered, do_mark_read, receipts_of

from .serializers import (
    AddMembersSerializer,
    AddMembersResponseSerializer,
    ConversationCreateSerializer,
    ConversationSerializer,
    DeliveredSerializer,
    DeviceCreateSerializer,
    DeviceSerializer,
    ErrorSerializer,
    FlagCreateSerializer,
    FlagSerializer,
    MemberSerializer,
    MessageInfoSerializer,
    MessagePageSerializer,
    MessagesQuerySerializer,
    PushSubscriptionSaveSerializer,
    PushSubscriptionSerializer,
    ReadSerializer,
    ReceiptsSerializer,
    SendMessageSerializer,
    SendMessageResponseSerializer,
    UserSearchQuerySerializer,
    UserSearchResponseSerializer,
    WatermarksSerializer,
    parse,
)

# Ids in paths are at most 18 digits (api.urls), which every database stores.
MAX_PATH_ID = 10**18 - 1
_ID_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_PATH_ID}


def id_param(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(name, _ID_SCHEMA, OpenApiParameter.PATH, description=f"The {what}'s id.")


CONVERSATION_ID = id_param("conversation_id", "conversation")
DEVICE_ID = OpenApiParameter("device_id", {"type": "string", "format": "uuid"}, OpenApiParameter.PATH)
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


# --- Devices ---------------------------------------------------------------------------------

class DevicesView(APIView):
    @extend_schema(operation_id="devices_list", responses={200: DeviceSerializer(many=True), **AUTH_ERRORS})
    def get(self, request: Request) -> Response:
        # Bounded by PARLEY_MAX_DEVICES_PER_USER.
        devices = Device.objects.filter(user=request.user).order_by("created_at", "id")
        return Response(DeviceSerializer(devices, many=True).data)

    @extend_schema(
        operation_id="devices_create", request=DeviceCreateSerializer,
        responses={201: DeviceSerializer, 400: E, 409: E, **AUTH_ERRORS},
        description="Register a client installation. 409 beyond PARLEY_MAX_DEVICES_PER_USER devices.",
    )
    def post(self, request: Request) -> Response:
        data = parse(DeviceCreateSerializer, request.data)
        device = do_register_device(user=request.user, name=data.get("name"), platform=data.get("platform"))
        return Response(DeviceSerializer(device).data, status=status.HTTP_201_CREATED)


class DeviceView(APIView):
    @extend_schema(
        operation_id="devices_delete", parameters=[DEVICE_ID], responses={204: None, 404: E, **AUTH_ERRORS},
        description="Remove one of your devices; its open WebSockets close with 4403.",
    )
    def delete(self, request: Request, device_id: str) -> Response:
        do_remove_device(user=request.user, device_id=device_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PushSubscriptionView(APIView):
    @extend_schema(
        operation_id="devices_push_subscription_save", parameters=[DEVICE_ID],
        request=PushSubscriptionSaveSerializer,
        responses={201: PushSubscriptionSerializer, 200: PushSubscriptionSerializer, 400: E, 404: E, 409: E,
                   **AUTH_ERRORS},
        description="Store the device's Web Push subscription (201), or replace it (200).",
    )
    def post(self, request: Request, device_id: str) -> Response:
        data = parse(PushSubscriptionSaveSerializer, request.data)
        subscription, created = do_save_push_subscription(
            user=request.user, device_id=device_id, endpoint=data["endpoint"],
            p256dh=data["keys"]["p256dh"], auth=data["keys"]["auth"],
        )
        return Response(PushSubscriptionSerializer(subscription).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(operation_id="devices_push_subscription_delete", parameters=[DEVICE_ID],
                   responses={204: None, 404: E, **AUTH_ERRORS})
    def delete(self, request: Request, device_id: str) -> Response:
        do_remove_push_subscription(user=request.user, device_id=device_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Conversations -----------------------------------------------------------------------------

class ConversationsView(APIView):
    pagination_class = ConversationPagination

    @extend_schema(
        operation_id="conversations_list", responses={200: ConversationSerializer(many=True), **AUTH_ERRORS},
        description="Your conversations, most recent activity first.",
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.my_memberships(request.user), request, view=self)
        return paginator.get_paginated_response([conversation_payload(m.conversation, m) for m in page])

    @extend_schema(
        operation_id="conversations_create", request=ConversationCreateSerializer,
        responses={201: ConversationSerializer, 200: ConversationSerializer, 400: E, **AUTH_ERRORS},
        description="201 with a new conversation; 200 with the existing direct conversation of the pair.",
    )
    def post(self, request: Request) -> Response:
        data = parse(ConversationCreateSerializer, request.data)
        if data["kind"] == Conversation.Kind.DIRECT:
            result = do_get_or_create_direct(creator=request.user, other_user_id=data["members"][0])
        else:
            result = do_create_group(creator=request.user, title=data.get("title"), member_ids=data["members"],
                                     kind=data["kind"], public=data["public"])
        return Response(conversation_payload(result.conversation, result.membership),
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class ConversationView(APIView):
    @extend_schema(
        operation_id="conversations_retrieve", parameters=[CONVERSATION_ID],
        responses={200: ConversationSerializer, 404: E, **AUTH_ERRORS},
        description="Yours, or a public channel (then `me` is null).",
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation, membership = access_conversation(request.user, conversation_id)
        return Response(conversation_payload(conversation, membership))


class MembersView(APIView):
    pagination_class = MemberPagination

    @extend_schema(operation_id="conversations_members_list", parameters=[CONVERSATION_ID],
                   responses={200: MemberSerializer(many=True), 404: E, **AUTH_ERRORS})
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation, membership = access_conversation(request.user, conversation_id)
        members = Membership.objects.filter(conversation=conversation).select_related("user").order_by("id")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(members, request, view=self)
        # A presence snapshot, so a client that just connected need not wait for the next
        # presence frame; only where those frames go (members of small conversations).
        online = None
        if membership is not None and not is_large(conversation.member_count):
            online = presence.online_user_ids([m.user_id for m in page])
        for member in page:
            member.online = None if online is None else member.user_id in online
        return paginator.get_paginated_response(MemberSerializer(page, many=True).data)

    @extend_schema(
        operation_id="conversations_members_add", parameters=[CONVERSATION_ID], request=AddMembersSerializer,
        responses={200: AddMembersResponseSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="Owners and admins of groups and channels add members (403 otherwise).",
    )
    def post(self, request: Request, conversation_id: int) -> Response:
        data = parse(AddMembersSerializer, request.data)
        added = do_add_members(actor=request.user, conversation_id=conversation_id, user_ids=data["user_ids"])
        return Response({"added": added})


class MemberView(APIView):
    @extend_schema(
        operation_id="conversations_members_remove",
        parameters=[CONVERSATION_ID, id_param("user_id", "user")], responses={204: None, 404: E, **AUTH_ERRORS},
        description="Leave (your own id), or remove someone as owner or admin.",
    )
    def delete(self, request: Request, conversation_id: int, user_id: int) -> Response:
        do_remove_member(actor=request.user, conversation_id=conversation_id, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JoinView(APIView):
    @extend_schema(
        operation_id="conversations_join", parameters=[CONVERSATION_ID], request=None,
        responses={201: ConversationSerializer, 200: ConversationSerializer, 404: E, **AUTH_ERRORS},
        description="Join a public channel (201); 200 if you are a member already.",
    )
    def post(self, request: Request, conversation_id: int) -> Response:
        result = do_join_channel(user=request.user, conversation_id=conversation_id)
        return Response(conversation_payload(result.conversation, result.membership),
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


# --- Messages and receipts ----------------------------------------------------------------------

class MessagesView(APIView):
    @extend_schema(
        operation_id="conversations_messages_list", parameters=[CONVERSATION_ID, MessagesQuerySerializer],
        responses={200: MessagePageSerializer, 400: E, 404: E, **AUTH_ERRORS},
        description="A page in ascending seq: after `after_seq` (default 0) or just before `before_seq`.",
    )
    def get(self, request: Request, conversation_id: int) -> Response:
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
    def post(self, request: Request, conversation_id: int) -> Response:
        data = parse(SendMessageSerializer, request.data)
        device = access_device(request.user, data["device"]) if "device" in data else None
        result = do_send_message(sender=request.user, conversation_id=conversation_id,
                                 client_msg_id=data["client_msg_id"], body=data["body"], device=device)
        return Response({"message": result.payload, "duplicate": result.duplicate},
                        status=status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED)


def _watermarks(marks: Watermarks) -> dict[str, int]:
    return {"delivered_seq": marks.delivered_seq, "read_seq": marks.read_seq}


class ReadView(APIView):
    @extend_schema(operation_id="conversations_read", parameters=[CONVERSATION_ID], request=ReadSerializer,
                   responses={200: WatermarksSerializer, 400: E, 404: E, **AUTH_ERRORS},
                   description="You have read everything up to seq (watermarks never move back).")
    def post(self, request: Request, conversation_id: int) -> Response:
        data = parse(ReadSerializer, request.data)
        return Response(_watermarks(do_mark_read(user=request.user, conversation_id=conversation_id,
                                                 seq=data["seq"])))


class DeliveredView(APIView):
    @extend_schema(operation_id="conversations_delivered", parameters=[CONVERSATION_ID],
                   request=DeliveredSerializer,
                   responses={200: WatermarksSerializer, 400: E, 404: E, **AUTH_ERRORS},
                   description="The device holds everything up to seq (for clients without a socket).")
    def post(self, request: Request, conversation_id: int) -> Response:
        data = parse(DeliveredSerializer, request.data)
        marks = do_mark_delivered(user=request.user, conversation_id=conversation_id, seq=data["seq"],
                                  device_id=data["device"])
        return Response(_watermarks(marks))


class ReceiptsView(APIView):
    @extend_schema(operation_id="conversations_receipts", parameters=[CONVERSATION_ID],
                   responses={200: ReceiptsSerializer, 404: E, **AUTH_ERRORS})
    def get(self, request: Request, conversation_id: int) -> Response:
        membership = access_membership(request.user, conversation_id)
        return Response({"members": receipts_of(membership.conversation)})


class MessageInfoView(APIView):
    @extend_schema(
        operation_id="messages_info", parameters=[id_param("message_id", "message")],
        responses={200: MessageInfoSerializer, 404: E, **AUTH_ERRORS},
        description="Who got and read a message: for its sender and moderators. Other members get 403.",
    )
    def get(self, request: Request, message_id: int) -> Response:
        return Response(message_info(access_message_info(request.user, message_id)))


class FlagView(APIView):
    @extend_schema(
        operation_id="messages_flag", parameters=[id_param("message_id", "message")], request=FlagCreateSerializer,
        responses={201: FlagSerializer, 400: E, 404: E, 409: E, **AUTH_ERRORS},
        description="Report a message to the moderators. One open flag per reporter and message (409).",
    )
    def post(self, request: Request, message_id: int) -> Response:
        data = parse(FlagCreateSerializer, request.data)
        flag = do_flag_message(reporter=request.user, message_id=message_id, reason=data["reason"],
                               note=data.get("note"))
        return Response(FlagSerializer(flag).data, status=status.HTTP_201_CREATED)


# --- Users -----------------------------------------------------------------------------------------

class UserSearchView(APIView):
    @extend_schema(operation_id="users_search", parameters=[UserSearchQuerySerializer],
                   responses={200: UserSearchResponseSerializer, 400: E, **AUTH_ERRORS},
                   description="Active users (not you) whose username or display name contains `search`.")
    def get(self, request: Request) -> Response:
        query = parse(UserSearchQuerySerializer, request.query_params)
        users = search_users(query=query.get("search", ""), viewer=request.user,
                             limit=settings.PARLEY_USER_SEARCH_LIMIT)
        return Response({"results": [user_payload(u) for u in users]})
