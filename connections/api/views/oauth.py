"""User-scoped connections (the admins' list, the caller's own under ``/me/``) and the OAuth callback."""
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations_site.api.errors import IntegrationNotFound, ValidationFailed
from integrations_site.api.viewsets import TenantScopedViewSet

from ... import selectors
from ...models import Integration
from ...services import oauth
from ..serializers import (
    AuthorizationSerializer,
    ConnectOAuthSerializer,
    DisconnectSerializer,
    MeConnectionSerializer,
    UserConnectionSerializer,
    me_connection_data,
)
from .nested import INTEGRATION_PK, IntegrationChildViewSet

INTEGRATION_ID = OpenApiParameter("id", str, OpenApiParameter.PATH, description="Integration id (UUID).")


@extend_schema(parameters=[INTEGRATION_PK])
class UserConnectionViewSet(mixins.ListModelMixin, IntegrationChildViewSet):
    """Users connected to a user-scoped integration (tenant admins): who, never their tokens."""

    queryset = selectors.user_credentials().select_related("user")
    serializer_class = UserConnectionSerializer
    ordering_fields = ["updated_at", "created_at"]
    ordering = ["-updated_at"]
    lookup_field = "user_id"
    lookup_value_regex = r"[0-9]+"
    permission_map = {"*": "user_connections.manage"}

    @extend_schema(request=None, responses={200: DisconnectSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, integration_pk=None, user_id=None):
        """Disconnect one user: revoke at the provider and erase their tokens."""
        credential = self.get_object()
        return Response(oauth.oauth_disconnect(actor=self.actor, integration=self.integration(),
                                               user=credential.user))


@extend_schema(parameters=[INTEGRATION_ID])
class MeIntegrationViewSet(TenantScopedViewSet):
    """The caller's own connection to a user-scoped integration."""

    throttle_family = "connections"

    queryset = selectors.integration_list_queryset()
    serializer_class = MeConnectionSerializer
    not_found_error = IntegrationNotFound
    permission_map = {"*": "me.connect"}

    def _own_integration(self) -> Integration:
        integration = self.get_object()
        if not integration.user_scoped:
            raise ValidationFailed("This integration is not user-scoped; it has one tenant-wide connection.",
                                   details={"user_scoped": [False]})
        if not getattr(self.request.user, "pk", None):
            raise ValidationFailed("User-scoped connections belong to users; API keys have none.")
        return integration

    @extend_schema(request=ConnectOAuthSerializer, responses={200: AuthorizationSerializer})
    @action(detail=True, methods=["post"], url_path="connect/oauth")
    def connect_oauth(self, request, pk=None):
        serializer = ConnectOAuthSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        integration = self._own_integration()
        return Response(oauth.oauth_start(actor=self.actor, integration=integration, user=request.user,
                                          return_url=serializer.validated_data["return_url"]),
                        headers={"Cache-Control": "no-store"})

    @extend_schema(responses={200: MeConnectionSerializer})
    @action(detail=True, methods=["get"])
    def connection(self, request, pk=None):
        integration = self._own_integration()
        credential = selectors.credential_of(integration, request.user)
        return Response(me_connection_data(credential))

    @extend_schema(request=None, responses={200: DisconnectSerializer})
    @action(detail=True, methods=["post"])
    def disconnect(self, request, pk=None):
        integration = self._own_integration()
        return Response(oauth.oauth_disconnect(actor=self.actor, integration=integration, user=request.user))


class OAuthCallbackView(APIView):
    """The provider sends the user back here; we exchange the code and redirect to the return URL.

    An unknown, used or expired state, or an issuer mix-up, gets an HTML page and no redirect.
    """

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []

    @extend_schema(
        auth=[],
        parameters=[
            OpenApiParameter("state", str, OpenApiParameter.QUERY, required=True),
            OpenApiParameter("code", str, OpenApiParameter.QUERY),
            OpenApiParameter("error", str, OpenApiParameter.QUERY),
            OpenApiParameter("iss", str, OpenApiParameter.QUERY, description="Issuer (RFC 9207), checked if sent."),
        ],
        responses={
            302: OpenApiResponse(description="Redirect to the return URL with status=connected or status=error."),
            (400, "text/html"): OpenApiResponse(
                response=OpenApiTypes.STR, description="HTML page: the callback was refused."
            ),
        },
    )
    def get(self, request):
        params = {k: request.query_params.get(k, "") for k in ("state", "code", "error", "iss")}
        try:
            location = oauth.oauth_callback(params=params)
        except oauth.OAuthCallbackError as exc:
            response = TemplateResponse(
                request, "oauth/result.html", {"title": "Connection not completed", "message": str(exc)}, status=400
            )
            response["Cache-Control"] = "no-store"
            return response
        response = HttpResponseRedirect(location)
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response
