"""The signed-in user's own account (issue 14, item 5): the profile (display name), the
password, and ending just this browser's session. Thin edges over messaging.accounts.
"""
from __future__ import annotations

from django.contrib.auth import logout, update_session_auth_hash
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.accounts import do_change_password, do_update_profile
from messaging.models import User, char_limit
from messaging.payloads import user_payload

from .common import AUTH_ERRORS, AuthenticatedRequest, E
from .fields import PASSWORD_MAX_LENGTH, RequestSerializer, StrictCharField, parse
from .serializers import UserSerializer


class ProfileUpdateSerializer(RequestSerializer):
    display_name = StrictCharField(max_length=char_limit(User, "display_name"), allow_blank=True,
                                   help_text="What other people see; blank shows the username.")


class PasswordChangeSerializer(RequestSerializer):
    current_password = StrictCharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)
    new_password = StrictCharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)


class MeView(APIView):
    @extend_schema(operation_id="me", responses={200: UserSerializer, **AUTH_ERRORS})
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(user_payload(request.user))

    @extend_schema(
        operation_id="me_update", request=ProfileUpdateSerializer,
        responses={200: UserSerializer, 400: E, **AUTH_ERRORS},
        description="Change your display name. Others see it from their next fetch of members or messages.",
    )
    def patch(self, request: AuthenticatedRequest) -> Response:
        data = parse(ProfileUpdateSerializer, request.data)
        return Response(user_payload(do_update_profile(user=request.user, display_name=data["display_name"])))


class PasswordView(APIView):
    @extend_schema(
        operation_id="me_password", request=PasswordChangeSerializer,
        responses={204: None, 400: E, **AUTH_ERRORS},
        description="Change your password, given the current one (400 with field errors otherwise). This "
                    "session stays; every other session ends, the API token is revoked and open sockets "
                    "close with 4401.",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        data = parse(PasswordChangeSerializer, request.data)
        user = do_change_password(user=request.user, current_password=data["current_password"],
                                  new_password=data["new_password"])
        if request.auth is None:  # a session: keep this one, the others no longer match the hash
            update_session_auth_hash(request._request, user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndSessionView(APIView):
    @extend_schema(
        operation_id="auth_end_session", request=None, responses={204: None, **AUTH_ERRORS},
        description="End this session only (its cookie), unlike `auth/logout`: the API token, other "
                    "sessions and other sockets stay. The browser app calls it when its device was "
                    "removed (logged out) from another device.",
    )
    def post(self, request: Request) -> Response:
        logout(request)
        return Response(status=status.HTTP_204_NO_CONTENT)
