"""Threads over REST: list, read with runs, read the conversation, delete."""

from __future__ import annotations

from typing import Any

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api import ThreadCreateView
from agents.filters import ThreadFilter
from agents.models import Thread
from agents.selectors import thread_get, thread_list, thread_message_list
from agents.serializers import ThreadCreateSerializer
from agents.thread_services import thread_delete
from core.errors import NotFoundError
from core.openapi import error_responses
from core.pagination import NewestFirstCursorPagination


class ThreadRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    input = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class ThreadOutputSerializer(serializers.ModelSerializer):
    agent: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    owner = serializers.CharField(source="owner.get_username", read_only=True)

    class Meta:
        model = Thread
        fields = ["id", "agent", "owner", "title", "created_at"]
        read_only_fields = fields


class ThreadDetailOutputSerializer(ThreadOutputSerializer):
    runs = serializers.SerializerMethodField()

    class Meta(ThreadOutputSerializer.Meta):
        fields = [*ThreadOutputSerializer.Meta.fields, "runs"]
        read_only_fields = fields

    @extend_schema_field(ThreadRunSerializer(many=True))
    def get_runs(self, thread: Thread) -> list[dict[str, Any]]:
        runs = thread.runs.order_by("created_at").values(
            "id", "status", "input", "created_at", "finished_at"
        )
        # many=True gives a ReturnList, which the stubs type as a ReturnDict.
        return list(ThreadRunSerializer(runs, many=True).data)


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant", "tool"])
    content = serializers.CharField(allow_blank=True)
    run = serializers.UUIDField(help_text="The run that added this message.")
    tool_call = serializers.DictField(required=False, help_text="name and arguments (JSON).")
    tool_name = serializers.CharField(required=False)


class ThreadMessagesSerializer(serializers.Serializer):
    thread = serializers.UUIDField()
    messages = MessageSerializer(many=True)


class ThreadListCreateView(ThreadCreateView, ListAPIView):
    """``GET`` lists threads, newest first; ``POST`` (from ``ThreadCreateView``) starts one."""

    serializer_class = ThreadOutputSerializer
    queryset = Thread.objects.none()  # for the schema; get_queryset answers requests
    filter_backends = [DjangoFilterBackend]
    filterset_class = ThreadFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self) -> Any:
        return thread_list(self.request.user)

    @extend_schema(
        summary="List threads",
        description=(
            "Your threads, newest first (cursor pagination). With `agents.view_thread`, "
            "everyone's; `?owner=` filters by username, `?agent=` by agent slug."
        ),
        responses={200: ThreadOutputSerializer(many=True), **error_responses(400, 401)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.list(request, *args, **kwargs)

    @extend_schema(
        summary="Start a thread",
        description="A conversation with an agent; runs created with `thread` continue it.",
        request=ThreadCreateSerializer,
        responses={201: ThreadDetailOutputSerializer, **error_responses(400, 401, 404)},
    )
    def post(self, request: Request) -> Response:
        response = super().post(request)
        thread = Thread.objects.get(pk=response.data["id"])
        response.data = ThreadDetailOutputSerializer(thread).data
        return response


THREAD_ID = OpenApiParameter("thread_id", str, OpenApiParameter.PATH, description="UUID.")


class ThreadDetailView(APIView):
    @extend_schema(
        summary="Read a thread with its runs",
        description="Yours, or anyone's with `agents.view_thread`; runs oldest first.",
        parameters=[THREAD_ID],
        responses={200: ThreadDetailOutputSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, thread_id: str) -> Response:
        thread = _thread_or_404(request, thread_id, perm="agents.view_thread")
        return Response(ThreadDetailOutputSerializer(thread).data)

    @extend_schema(
        summary="Delete a thread",
        description=(
            "Yours, or anyone's with `agents.delete_thread`. Its runs are kept (they leave "
            "the thread); the conversation is gone."
        ),
        parameters=[THREAD_ID],
        responses={204: None, **error_responses(401, 404)},
    )
    def delete(self, request: Request, thread_id: str) -> Response:
        thread = _thread_or_404(request, thread_id, perm="agents.delete_thread")
        thread_delete(thread=thread)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ThreadMessagesView(APIView):
    @extend_schema(
        summary="The conversation of a thread",
        description=(
            "The messages the thread's next run will load, oldest first, each with the run "
            "that added it: the succeeded runs' messages, newest whole runs that fit "
            "`THREAD_HISTORY_MAX_CHARS`."
        ),
        parameters=[THREAD_ID],
        responses={200: ThreadMessagesSerializer, **error_responses(401, 404)},
    )
    def get(self, request: Request, thread_id: str) -> Response:
        thread = _thread_or_404(request, thread_id, perm="agents.view_thread")
        return Response({"thread": str(thread.pk), "messages": thread_message_list(thread)})


def _thread_or_404(request: Request, thread_id: str, *, perm: str) -> Thread:
    thread = thread_get(request.user, thread_id, perm=perm)
    if thread is None:
        raise NotFoundError("not_found", "No such thread.")
    return thread
