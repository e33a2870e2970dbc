"""What every app's API shares, importing none of the apps.

The error type services raise and the one handler that turns errors into responses
(``errors``), strict serializer fields (``serializers``), pagination, permissions and
throttles. ``secrets_vault``, ``moderation``, ``agents`` and ``monitoring`` build on it.
"""
