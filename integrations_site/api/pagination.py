import re

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

INTEGER = re.compile(r"[+-]?\d+", re.ASCII)


class CountedRows:
    """A page source for ``paginate_queryset``: counted with ``counted`` (the filtered queryset,
    a plain ``COUNT(*)``), sliced from ``rows`` (the same rows as ``values()`` with joins and
    annotations, which Django would otherwise count through a subquery)."""

    def __init__(self, counted, rows):
        self.counted, self.rows = counted, rows

    def count(self) -> int:
        return self.counted.count()

    def __getitem__(self, index):
        return self.rows[index]


class PreparedRows:
    """A page source for ``paginate_queryset`` from prepared statements (integrations_site/prepared.py):
    ``rows`` gives the page, ``counted`` the total, both for the same ``shape`` and ``ids``."""

    def __init__(self, rows, counted, shape, **ids):
        self.rows, self.counted, self.shape, self.ids = rows, counted, shape, ids

    def count(self) -> int:
        return self.counted.count(self.shape, **self.ids)

    def __getitem__(self, index: slice):
        return self.rows.rows(self.shape, limit=index.stop - index.start, offset=index.start, **self.ids)


class LimitOffsetEnvelopePagination(LimitOffsetPagination):
    """``limit`` (default 50, max 100) and ``offset``; the contract's list envelope.

    DRF falls back to the defaults for a value it cannot read; here ``limit``
    must be a whole number from 1 (larger than 100 is served as 100) and
    ``offset`` one from 0, each given once, else 400 VALIDATION_ERROR naming it.
    Empty (``?limit=``) is the same as leaving it out.
    """

    default_limit = 50
    max_limit = 100

    def paginate_queryset(self, queryset, request, view=None):
        problems = {}
        self._limit = self._read(request, self.limit_query_param, minimum=1, default=self.default_limit,
                                 problems=problems)
        self._offset = self._read(request, self.offset_query_param, minimum=0, default=0, problems=problems)
        if problems:
            raise ValidationError(problems)
        return super().paginate_queryset(queryset, request, view)

    @staticmethod
    def _read(request, name: str, *, minimum: int, default: int, problems: dict) -> int:
        values = request.query_params.getlist(name)
        if not values or values == [""]:  # an empty value means "not given", as in a submitted form
            return default
        if len(values) > 1:
            problems[name] = ["Give this parameter once."]
        elif not INTEGER.fullmatch(values[0]):
            problems[name] = ["A whole number is required."]
        elif int(values[0]) < minimum:
            problems[name] = [f"Must be at least {minimum}."]
        else:
            return int(values[0])
        return default

    def get_limit(self, request):
        return min(self._limit, self.max_limit)

    def get_offset(self, request):
        return self._offset

    def get_paginated_response(self, data):
        next_offset = self.offset + self.limit
        has_more = next_offset < self.count
        return Response(
            {
                "results": data,
                "total": self.count,
                "limit": self.limit,
                "offset": self.offset,
                "has_more": has_more,
                "next_offset": next_offset if has_more else None,
            }
        )

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": f"Results per page, default {self.default_limit}; more than {self.max_limit} "
                               f"is served as {self.max_limit}.",
                "allowEmptyValue": True,
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": self.offset_query_param,
                "required": False,
                "in": "query",
                "description": "How many results to skip.",
                "allowEmptyValue": True,
                "schema": {"type": "integer", "minimum": 0},
            },
        ]

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "total", "limit", "offset", "has_more", "next_offset"],
            "properties": {
                "results": schema,
                "total": {"type": "integer", "example": 123},
                "limit": {"type": "integer", "example": 50},
                "offset": {"type": "integer", "example": 0},
                "has_more": {"type": "boolean"},
                "next_offset": {"type": "integer", "nullable": True, "example": 50},
            },
        }
