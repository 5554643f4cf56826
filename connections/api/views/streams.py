"""An integration's event stream as the API shows it: ``GET /integrations/{id}/stream``."""
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from ...services.streams import stream_state
from ..serializers import StreamStateSerializer


class IntegrationStreamMixin:
    """The ``stream`` detail action of ``IntegrationViewSet``, whose ``permission_map`` names its permission."""

    @extend_schema(responses={200: StreamStateSerializer})
    @action(detail=True, methods=["get"], url_path="stream")
    def stream(self, request, pk=None):
        """Who holds the event stream and what it has done; ``stopped`` when it is not to be read."""
        return Response(StreamStateSerializer(stream_state(self.get_object())).data)
