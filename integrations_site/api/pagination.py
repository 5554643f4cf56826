from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response


class LimitOffsetEnvelopePagination(LimitOffsetPagination):
    """``limit`` (default 50, max 100) and ``offset``; the contract's list envelope."""

    default_limit = 50
    max_limit = 100

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
