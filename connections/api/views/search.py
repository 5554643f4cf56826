"""``POST /search``: one search over every system the caller's tenant connected."""
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations_site.api.errors import NotFoundError
from integrations_site.api.serializers import ErrorEnvelopeSerializer
from integrations_site.api.viewsets import RoleMappedMixin

from ...services import search as search_service
from ..serializers import GlobalSearchAnswerSerializer, GlobalSearchSerializer


class SearchView(RoleMappedMixin, APIView):
    """Every searchable integration of the tenant asked at once; the answer grouped by integration and entity."""

    permission_map = {"post": "integrations.read"}
    throttle_family = "search"

    @extend_schema(request=GlobalSearchSerializer,
                   responses={200: GlobalSearchAnswerSerializer, 400: ErrorEnvelopeSerializer})
    def post(self, request):
        if self.ctx.tenant is None:
            raise NotFoundError("This token is platform-wide; it belongs to no tenant.")
        body = GlobalSearchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ids = body.validated_data.get("integrations")
        return Response(search_service.search(
            tenant=self.ctx.tenant, user=request.user, request=search_service.search_request(body.validated_data),
            ids=None if ids is None else [str(pk) for pk in dict.fromkeys(ids)], grouped=True,
        ))
