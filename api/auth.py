"""Authentication endpoints (CONTRACT, "Authentication").

REST accepts ``Authorization: Token <token>`` or the session cookie; DRF's
SessionAuthentication demands the CSRF token for unsafe methods on session requests.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.access import access_device
from messaging.accounts import do_logout_everywhere, do_signup, issue_token
from messaging.errors import Forbidden
from messaging.models import User
from messaging.payloads import user_payload
from messaging.tickets import issue_ticket

from .common import AuthenticatedRequest
from .fields import ErrorSerializer, parse
from .serializers import (
    AuthResponseSerializer,
    LoginSerializer,
    SignupSerializer,
    TokenResponseSerializer,
    WsTicketCreateSerializer,
    WsTicketResponseSerializer,
)
from .throttles import (
    LoginPerIPThrottle,
    LoginPerUsernameThrottle,
    SignupThrottle,
    WsTicketThrottle,
)

# 429 over a rate limit; 503 while the rate limiter's store is down (these fail closed).
ERRORS = {400: ErrorSerializer, 429: ErrorSerializer, 503: ErrorSerializer}


class CredentialsEndpoint(APIView):
    """An endpoint that takes a username and password instead of an existing login.

    No authentication classes, so DRF asks for no CSRF token: that is safe because the API
    parses JSON only, which a cross-site form cannot send (it gets 415) and a cross-site
    script cannot send without a CORS preflight that Parley never grants.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return "Token"  # keeps bad credentials a 401 (DRF turns 401 into 403 without a header)

    def check_credentials(self, request: Request) -> User:
        data = parse(LoginSerializer, request.data)
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None:
            raise AuthenticationFailed("Wrong username or password.")
        return user


class SignupView(CredentialsEndpoint):
    throttle_classes = [SignupThrottle]

    @extend_schema(
        operation_id="auth_signup", request=SignupSerializer, auth=[],
        responses={201: AuthResponseSerializer, 403: ErrorSerializer, **ERRORS},
        description="Create an account. 403 when open signup is switched off (PARLEY_OPEN_SIGNUP).",
    )
    def post(self, request: Request) -> Response:
        if not settings.PARLEY_OPEN_SIGNUP:
            raise Forbidden("signup is closed on this server")
        data = parse(SignupSerializer, request.data)
        user, token = do_signup(username=data["username"], password=data["password"],
                                display_name=data["display_name"])
        return Response({"user": user_payload(user), "token": token}, status=status.HTTP_201_CREATED)


class LoginView(CredentialsEndpoint):
    throttle_classes = [LoginPerIPThrottle, LoginPerUsernameThrottle]

    @extend_schema(
        operation_id="auth_login", request=LoginSerializer, auth=[],
        responses={200: AuthResponseSerializer, 401: ErrorSerializer, **ERRORS},
        description="Start a session (cookie, new session key) and return the API token as well.",
    )
    def post(self, request: Request) -> Response:
        user = self.check_credentials(request)
        login(request, user)  # rotates the session key: no session fixation
        return Response({"user": user_payload(user), "token": issue_token(user)})


class TokenView(CredentialsEndpoint):
    throttle_classes = [LoginPerIPThrottle, LoginPerUsernameThrottle]

    @extend_schema(
        operation_id="auth_token", request=LoginSerializer, auth=[],
        responses={200: TokenResponseSerializer, 401: ErrorSerializer, **ERRORS},
        description="The API token for non-browser clients; no session is started.",
    )
    def post(self, request: Request) -> Response:
        return Response({"token": issue_token(self.check_credentials(request))})


class LogoutView(APIView):
    @extend_schema(
        operation_id="auth_logout", request=None,
        responses={204: None, 401: ErrorSerializer, 403: ErrorSerializer},
        description="End this session, revoke the API token and close every open WebSocket of the user (4401).",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        do_logout_everywhere(user=request.user)
        logout(request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WsTicketView(APIView):
    throttle_classes = [WsTicketThrottle]

    @extend_schema(
        operation_id="ws_ticket", request=WsTicketCreateSerializer,
        responses={200: WsTicketResponseSerializer, 401: ErrorSerializer, 403: ErrorSerializer,
                   404: ErrorSerializer, **ERRORS},
        description="A single-use WebSocket ticket, valid for PARLEY_WS_TICKET_TTL_SECONDS (at most 60 s).",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        data = parse(WsTicketCreateSerializer, request.data)
        device_id = access_device(request.user, data["device"]).pk if "device" in data else None
        ticket, expires_in = issue_ticket(user_id=request.user.pk, device_id=device_id)
        return Response({"ticket": ticket, "expires_in": expires_in})
