"""Pagination for every list: limit/offset with a bounded limit."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, LimitOffsetPagination


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """Limit/offset whose ``limit`` is capped, so ``?limit=10**20`` is a page, not an error."""

    default_limit = 50
    max_limit = 500


class NewestFirstCursorPagination(CursorPagination):
    """Cursor pagination, newest first: pages stay stable while new rows arrive (an offset
    would shift under them). ``?limit=`` is capped like the limit/offset one; a cursor
    that does not decode is a 400 naming ``cursor``."""

    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def decode_cursor(self, request: Any) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError(
                {self.cursor_query_param: ["Not a cursor from a page."]}
            ) from None
