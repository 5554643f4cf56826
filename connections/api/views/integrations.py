"""A tenant's integrations: CRUD, lifecycle, credentials, test, health, poll, OAuth connect and disconnect,
limits and usage, activity, widgets and the event stream's state."""
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from catalog.models import IntegrationProvider
from integrations_site import activity
from integrations_site.api.errors import (
    ApiError,
    IntegrationNotFound,
    LimitExceeded,
    NotFoundError,
    ProviderNotFound,
    UpstreamFailed,
    UrlNotAllowed,
    ValidationFailed,
)
from integrations_site.api.filters import filters_nothing, ordering_of
from integrations_site.api.pagination import CountedRows, PreparedRows
from integrations_site.api.serializers import ErrorEnvelopeSerializer
from integrations_site.api.viewsets import TenantScopedViewSet

from ... import selectors, services
from ...choices import CheckError
from ...filters import IntegrationFilter
from ...services import checks, oauth, polling, queueing, usage, widgets
from ...services import search as search_service
from ...services.statuses import PollError
from ..serializers import (
    ActivityQuerySerializer,
    ActivitySerializer,
    AuthorizationSerializer,
    ConnectionCheckSerializer,
    ConnectionSerializer,
    ConnectOAuthSerializer,
    CredentialInSerializer,
    CredentialOutSerializer,
    CredentialPatchResultSerializer,
    CredentialPatchSerializer,
    DisconnectSerializer,
    HealthSerializer,
    IntegrationSerializer,
    LimitsSerializer,
    PollResultSerializer,
    QueuedCheckSerializer,
    QueuedPollSerializer,
    SearchAnswerSerializer,
    SearchQuerySerializer,
    UsageDaySerializer,
    UsageQuerySerializer,
    UsageSerializer,
    WidgetDataQuerySerializer,
    WidgetDataSerializer,
    WidgetStatusSerializer,
    connection_data,
    credential_out,
    integration_rows_representation,
    validate_credential_input,
)
from .streams import IntegrationStreamMixin

ASYNC_PARAM = OpenApiParameter(
    "async", bool, OpenApiParameter.QUERY, description="1 (or true) to queue and answer 202; 0 or false runs it now."
)


def tenant_integration(ctx, pk) -> dict | None:
    """The answer of the caller's tenant's integration ``pk``, None when there is none: the detail's read,
    for the view and for its direct read (``integrations_site/api/direct.py``)."""
    return _integration_answer(lambda columns: selectors.tenant_integration_rows(tuple(columns), ctx.tenant.pk, pk))


def _integration_answer(fetch) -> dict | None:
    """The answer of the first row ``fetch(columns)`` gives, None when it gives none or the id is no UUID."""
    rows = integration_rows_representation()
    try:
        found = fetch(rows.columns)
    except (ValueError, DjangoValidationError):  # not a UUID
        return None
    return rows.one(found[0]) if found else None


class IntegrationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    IntegrationStreamMixin,
    TenantScopedViewSet,
):
    """A tenant's integrations. DELETE is a soft delete."""

    throttle_family = "integrations"
    throttle_families = {
        "test": "connections", "poll": "connections", "credentials": "connections", "connect_oauth": "connections",
        "disconnect": "connections",
        "widget_status": "widgets",
        "widget_activity": "widgets",
        "widget_data": "widgets",
        "search": "search",
    }

    queryset = selectors.integration_list_queryset()
    serializer_class = IntegrationSerializer
    filterset_class = IntegrationFilter
    ordering_fields = ["name", "created_at", "updated_at", "status", "health_state", "health_checked_at"]
    ordering = ["-created_at"]
    not_found_error = IntegrationNotFound
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    permission_map = {
        "list": "integrations.read",
        "retrieve": "integrations.read",
        "connection": "integrations.read",
        "create": "integrations.write",
        "update": "integrations.write",
        "partial_update": "integrations.write",
        "enable": "integrations.write",
        "disable": "integrations.write",
        "credentials": "integrations.write",
        "connect_oauth": "integrations.write",
        "disconnect": "integrations.write",
        "destroy": "integrations.delete",
        "test": "integrations.write",
        "poll": "integrations.write",
        "health": "integrations.read",
        "limits": "integrations.read",
        "usage_days": "integrations.read",
        "activity": "integrations.read",
        "widget_status": "integrations.read",
        "widget_activity": "integrations.read",
        "search": "integrations.read",
        "widget_data": "integrations.read",
        "stream": "integrations.read",
    }

    def _fresh(self, integration):
        return self.get_queryset().get(pk=integration.pk)

    def list(self, request, *args, **kwargs):
        """The page is read as rows and shown with IntegrationSerializer's own fields (api/rows.py); a
        tenant's page that filters nothing runs prepared statements (``selectors.TENANT_INTEGRATION_PAGE``)."""
        rows = integration_rows_representation()
        if self.ctx.tenant is not None and filters_nothing(request, self):
            source = PreparedRows(selectors.TENANT_INTEGRATION_PAGE, selectors.TENANT_INTEGRATION_TOTAL,
                                  (tuple(rows.columns), ordering_of(request, self)), tenant=self.ctx.tenant.pk)
        else:
            queryset = self.filter_queryset(self.get_queryset())
            source = CountedRows(queryset, selectors.integration_rows(queryset, rows.columns))
        return self.get_paginated_response(rows.many(self.paginate_queryset(source)))

    def retrieve(self, request, *args, **kwargs):
        if self.ctx.tenant is not None:
            data = tenant_integration(self.ctx, kwargs["pk"])
        else:  # platform-wide: every tenant's rows
            data = _integration_answer(lambda columns: list(
                selectors.integration_rows(self.get_queryset().filter(pk=kwargs["pk"]), columns)[:1]))
        if data is None:
            raise self.not_found_error()
        return Response(data)

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        slug = data.pop("provider_slug")
        provider = IntegrationProvider.objects.tenant_catalog().filter(slug=slug).first()
        if provider is None:
            raise ProviderNotFound(f"No provider '{slug}' in the catalog.", details={"provider": slug})
        tenant = self.tenant_for_write()
        serializer.instance = self._fresh(
            services.integration_create(actor=self.actor, tenant=tenant, provider=provider, data=data)
        )

    @extend_schema(request=IntegrationSerializer(partial=True))
    def update(self, request, *args, **kwargs):
        if request.method == "PUT":
            kwargs["partial"] = True  # PUT is served as PATCH: no field is ever cleared by omission
        return super().update(request, *args, **kwargs)

    def perform_update(self, serializer):
        integration = services.integration_update(
            actor=self.actor, integration=serializer.instance, data=serializer.validated_data
        )
        serializer.instance = self._fresh(integration)

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        services.integration_delete(actor=self.actor, integration=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: IntegrationSerializer})
    @action(detail=True, methods=["post"])
    def enable(self, request, pk=None):
        integration = services.integration_enable(actor=self.actor, integration=self.get_object())
        return Response(IntegrationSerializer(self._fresh(integration)).data)

    @extend_schema(request=None, responses={200: IntegrationSerializer})
    @action(detail=True, methods=["post"])
    def disable(self, request, pk=None):
        integration = services.integration_disable(actor=self.actor, integration=self.get_object())
        return Response(IntegrationSerializer(self._fresh(integration)).data)

    @extend_schema(methods=["PUT"], request=CredentialInSerializer, responses={200: CredentialOutSerializer})
    @extend_schema(methods=["PATCH"], request=CredentialPatchSerializer,
                   responses={200: CredentialPatchResultSerializer})
    @extend_schema(methods=["DELETE"], request=None, responses={204: None})
    @action(detail=True, methods=["put", "patch", "delete"])
    def credentials(self, request, pk=None):
        """PUT sets (type + fields), PATCH changes some fields, DELETE removes. Never answers a secret."""
        integration = self.get_object()
        if request.method == "DELETE":
            if not services.credential_remove(actor=self.actor, integration=integration):
                raise NotFoundError("This integration has no credentials to remove.")
            return Response(status=status.HTTP_204_NO_CONTENT)
        if request.method == "PATCH":
            if not isinstance(request.data, dict):
                raise ValidationFailed("Expected a JSON object.")
            credential = services.credential_update(actor=self.actor, integration=integration,
                                                    data=dict(request.data))
            return Response({"success": True, "credential_version": credential.version,
                             "updated_at": credential.updated_at})
        credential_type, fields = validate_credential_input(request.data)
        credential = services.credential_set(
            actor=self.actor, integration=integration, credential_type=credential_type, data=fields
        )
        return Response(credential_out(credential))

    @extend_schema(
        request=None,
        parameters=[ASYNC_PARAM],
        responses={200: ConnectionCheckSerializer, 202: QueuedCheckSerializer},
    )
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Test the connection now, or queue the test with ``?async=1`` (202 with the check id)."""
        integration = self.get_object()
        if _wants_async(request):
            check = queueing.connection_test_queue(integration=integration, actor=self.actor)
            return Response({"check_id": str(check.pk), "status": "queued"}, status=status.HTTP_202_ACCEPTED)
        check = checks.connection_test_run(integration=integration, actor=self.actor)
        if check.error_code == CheckError.URL_NOT_ALLOWED:
            raise UrlNotAllowed(check.error_message, details={"check_id": str(check.pk)})
        if check.error_code == CheckError.LIMIT_EXCEEDED:
            raise LimitExceeded(check.error_message, details={"check_id": str(check.pk)})
        return Response(ConnectionCheckSerializer(check).data)

    @extend_schema(responses={200: HealthSerializer})
    @action(detail=True, methods=["get"])
    def health(self, request, pk=None):
        return Response(selectors.integration_health(self.get_object()))

    @extend_schema(
        request=None, parameters=[ASYNC_PARAM],
        responses={
            200: PollResultSerializer, 202: QueuedPollSerializer,
            502: OpenApiResponse(
                ErrorEnvelopeSerializer,
                description="The status endpoint failed (CONNECTION_FAILED, TIMEOUT, INVALID_CREDENTIALS, "
                            "UNEXPECTED_STATUS, RESPONSE_TOO_LARGE).",
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def poll(self, request, pk=None):
        """Poll the status endpoint now (``?async=1`` queues it): counts of seen, changed, unknown."""
        integration = self.get_object()
        if _wants_async(request):
            queueing.status_poll_queue(integration=integration)
            return Response({"status": "queued"}, status=status.HTTP_202_ACCEPTED)
        try:
            result = polling.status_poll(integration=integration, actor=self.actor)
        except PollError as exc:
            raise poll_error_response(exc) from None
        return Response(result.as_dict())

    @extend_schema(request=ConnectOAuthSerializer, responses={200: AuthorizationSerializer})
    @action(detail=True, methods=["post"], url_path="connect/oauth")
    def connect_oauth(self, request, pk=None):
        """Start an OAuth2 connect flow: the URL to send the user to, and its single-use state."""
        serializer = ConnectOAuthSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        integration = self.get_object()
        return Response(oauth.oauth_start(actor=self.actor, integration=integration,
                                          return_url=serializer.validated_data["return_url"]),
                        headers={"Cache-Control": "no-store"})

    @extend_schema(request=None, responses={200: DisconnectSerializer})
    @action(detail=True, methods=["post"])
    def disconnect(self, request, pk=None):
        """Revoke at the provider when it can (a failure is recorded, not fatal) and erase the secrets."""
        return Response(oauth.oauth_disconnect(actor=self.actor, integration=self.get_object()))

    @extend_schema(responses={200: LimitsSerializer})
    @action(detail=True, methods=["get"])
    def limits(self, request, pk=None):
        """Usage against the integration's limits: monthly budget, tokens, requests per minute."""
        return Response(usage.limits(self.get_object()))

    @extend_schema(parameters=[UsageQuerySerializer], responses={200: UsageSerializer})
    @action(detail=True, methods=["get"], url_path="usage")
    def usage_days(self, request, pk=None):
        """Daily usage rows (default: the last 30 days), counted in batches every few seconds."""
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        integration = self.get_object()
        start, end = query.validated_data["start"], query.validated_data["end"]
        days = usage.daily(integration, start, end)
        return Response({"integration_id": integration.pk, "from": start, "to": end,
                         "days": UsageDaySerializer(days, many=True).data})

    @extend_schema(parameters=[ActivityQuerySerializer], responses={200: ActivitySerializer})
    @action(detail=True, methods=["get"])
    def activity(self, request, pk=None):
        """Tests, connects, config changes, syncs and webhooks in one feed, newest first."""
        return self._activity(request, default_limit=50)

    def _activity(self, request, *, default_limit: int) -> Response:
        query = ActivityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(activity.integration_activity(
            self.get_object(), time_range=query.validated_data["time_range"],
            limit=query.validated_data.get("limit", default_limit),
        ))

    @extend_schema(responses={200: WidgetStatusSerializer})
    @action(detail=True, methods=["get"], url_path="widgets/status")
    def widget_status(self, request, pk=None):
        return Response(selectors.integration_widget_status(self.get_object()))

    @extend_schema(parameters=[ActivityQuerySerializer], responses={200: ActivitySerializer})
    @action(detail=True, methods=["get"], url_path="widgets/activity")
    def widget_activity(self, request, pk=None):
        """The activity feed, compact: 10 items unless ``limit`` says otherwise."""
        return self._activity(request, default_limit=10)

    @extend_schema(parameters=[SearchQuerySerializer], responses={200: SearchAnswerSerializer})
    @action(detail=True, methods=["get"])
    def search(self, request, pk=None):
        """Search this integration's system; an upstream that fails is an entry in ``errors``, still a 200."""
        query = SearchQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        integration = self.get_object()
        answer = search_service.search(tenant=integration.tenant_id, user=request.user,
                                       request=search_service.search_request(query.validated_data),
                                       ids=[str(integration.pk)], grouped=False)
        return Response(answer)

    @extend_schema(parameters=[WidgetDataQuerySerializer],
                   responses={200: WidgetDataSerializer, 400: ErrorEnvelopeSerializer, 502: OpenApiResponse(
                       ErrorEnvelopeSerializer, description="The API failed: CONNECTION_FAILED, INVALID_CREDENTIALS.")})
    @action(detail=True, methods=["get"], url_path="widgets/data")
    def widget_data(self, request, pk=None):
        """Live entities of the integration's system, the declared fields only; cached for a few seconds."""
        integration = self.get_object()
        query = WidgetDataQuerySerializer(data=request.query_params,
                                          context={"entities": integration.provider.entity_config})
        query.is_valid(raise_exception=True)
        try:
            return Response(widgets.widget_data(integration, request.user, widgets.WidgetQuery(**query.validated_data)))
        except widgets.WidgetDataFailed as failed:
            raise UpstreamFailed(failed.message, code=failed.code) from None

    @extend_schema(responses={200: ConnectionSerializer})
    @action(detail=True, methods=["get"])
    def connection(self, request, pk=None):
        integration = self.get_object()
        return Response(connection_data(selectors.credential_of(integration)))


ASYNC_SPELLINGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _wants_async(request) -> bool:
    """``?async=1`` queues; an unreadable value is a 400 naming the parameter, not a silent run now."""
    value = request.query_params.get("async")
    if value is None:
        return False
    if value.lower() not in ASYNC_SPELLINGS:
        raise ValidationFailed("async: use 1 (queue) or 0.", details={"async": ["Must be 1 or 0 (true or false)."]})
    return ASYNC_SPELLINGS[value.lower()]


def poll_error_response(exc) -> ApiError:
    """A failed poll as an API error: refused URL or missing config are 400, the far side failing is 502."""
    if exc.code == CheckError.URL_NOT_ALLOWED:
        return UrlNotAllowed(exc.message)
    if exc.code == CheckError.LIMIT_EXCEEDED:
        return LimitExceeded(exc.message)
    if exc.code == CheckError.NOT_CONFIGURED:
        return ValidationFailed(exc.message, details={"status_endpoint": [exc.message]})
    error = ApiError(exc.message, code=exc.code)
    error.status_code = status.HTTP_502_BAD_GATEWAY
    return error
