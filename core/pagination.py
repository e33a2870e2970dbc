"""Pagination for every list: limit/offset with a bounded limit."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """Limit/offset whose ``limit`` is capped, so ``?limit=10**20`` is a page, not an error."""

    default_limit = 50
    max_limit = 500
