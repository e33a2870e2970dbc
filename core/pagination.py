"""Pagination for every list: limit/offset with a bounded limit."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, LimitOffsetPagination

# Beyond PostgreSQL's bigint an OFFSET is a DataError; no list comes near it anyway.
MAX_OFFSET = 2**31 - 1


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """Limit/offset whose ``limit`` is capped, so ``?limit=10**20`` is a page, not an error,
    and whose ``offset`` is a 400 naming it when it is not a number in 0..2**31-1."""

    default_limit = 50
    max_limit = 500

    def get_offset(self, request: Any) -> int:
        raw = request.query_params.get(self.offset_query_param)
        if raw is None:
            return 0
        if not raw.isdigit() or int(raw) > MAX_OFFSET:
            raise ValidationError(
                {self.offset_query_param: [f"A whole number from 0 to {MAX_OFFSET}."]}
            )
        return int(raw)

    def get_limit(self, request: Any) -> int | None:
        raw = request.query_params.get(self.limit_query_param)
        if raw is not None and not (raw.isdigit() and int(raw) >= 1):
            raise ValidationError({self.limit_query_param: ["A whole number of at least 1."]})
        return super().get_limit(request)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters


class NewestFirstCursorPagination(CursorPagination):
    """Cursor pagination, newest first: pages stay stable while new rows arrive (an offset
    would shift under them). ``?limit=`` is capped like the limit/offset one; a cursor
    that does not decode is a 400 naming ``cursor``."""

    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def get_page_size(self, request: Any) -> int | None:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None and not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
            # DRF would fall back to the default page size for ``?limit=null``.
            raise ValidationError({self.page_size_query_param: ["A whole number of at least 1."]})
        return super().get_page_size(request)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1)
        return parameters

    def decode_cursor(self, request: Any) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError(
                {self.cursor_query_param: ["Not a cursor from a page."]}
            ) from None
