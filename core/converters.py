"""URL path converters: ``<id:...>`` is a positive integer a database column can hold.

Django's ``<int:...>`` matches any digits, so ``/flags/99999999999999999999/`` reached the
query and failed there (a DataError, a 500). Nine digits at most: a 404 instead.
"""

from __future__ import annotations

from django.urls import register_converter


class IdConverter:
    regex = "[0-9]{1,9}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
