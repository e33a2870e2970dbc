"""REST API for agents and runs (thin views: validate, call a service or selector)."""

from __future__ import annotations

from typing import Any

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.filters import RunFilter
from agents.models import Agent, Run, Thread
from agents.selectors import agent_list, run_event_list, run_get, run_list
from agents.serializers import (
    BATCH_MAX_INPUTS,
    CancelResultSerializer,
    EventsPageSerializer,
    EventsQuerySerializer,
    RunBatchCreateSerializer,
    RunBatchResultSerializer,
    RunCreateSerializer,
    RunSerializer,
    ThreadCreateSerializer,
    ThreadSerializer,
)
from agents.services import BatchItem, run_batch_create, run_cancel, run_create
from agents.thread_services import thread_create
from core.errors import ApplicationError, ConflictError, NotFoundError
from core.openapi import IDEMPOTENCY_KEY, error_responses
from core.pagination import NewestFirstCursorPagination
from core.serializers import error_paths
from core.throttles import RunCreateRateThrottle, TokenRateThrottle

IDEMPOTENCY_KEY_MAX = 255


def agent_to_run(user: Any, slug: str) -> Agent:
    agent = agent_list(user).filter(slug=slug).first()
    if agent is None:
        if Agent.objects.filter(slug=slug, is_active=False).exists():
            raise ConflictError("agent_inactive", f"Agent '{slug}' is not active.")
        raise NotFoundError("agent_not_found", f"No agent '{slug}'.")
    return agent


def idempotency_key_of(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
        raise ApplicationError("invalid_idempotency_key", "Idempotency-Key is too long (max 255).")
    return key


class AgentRunCreateView(APIView):
    throttle_classes = [TokenRateThrottle, RunCreateRateThrottle]

    @extend_schema(
        summary="Start a run",
        description="Queues a run of the agent with this input (201). It continues a thread "
        "when `thread` is given, and `limits` can only lower the agent's. With an "
        "Idempotency-Key the same key and body return the first run (200); the same key "
        "with another body is a 422 idempotency_key_reused. An inactive agent is a 409 "
        "agent_inactive, a spent monthly budget a 402 budget_exhausted. More runs queued "
        "or running than the owner's quota is a 429 too_many_runs, more creations than "
        "the token's rate a 429 throttled (both with Retry-After).",
        request=RunCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: RunSerializer,
            200: RunSerializer,
            **error_responses(402, 409, 422),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        agent = agent_to_run(request.user, slug)
        body = RunCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = idempotency_key_of(request)
        thread = None
        if "thread" in body.validated_data:
            thread = Thread.objects.filter(
                pk=body.validated_data["thread"], owner=request.user
            ).first()
            if thread is None:
                raise NotFoundError("thread_not_found", "No such thread.")
        run, created = run_create(
            agent=agent,
            owner=request.user,
            input=body.validated_data["input"],
            idempotency_key=key,
            limits=body.validated_data.get("limits"),
            thread=thread,
        )
        return Response(
            RunSerializer(run).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class AgentRunBatchCreateView(APIView):
    throttle_classes = [TokenRateThrottle, RunCreateRateThrottle]

    @extend_schema(
        summary="Start runs in a batch",
        description=f"Queues 1 to {BATCH_MAX_INPUTS} runs of the agent in one transaction "
        "(201 and their ids, in the order of the inputs), for evaluation jobs. Each input "
        "is checked like a single create's body; any invalid input is a 400 whose details "
        "name every bad value by its path (`inputs[3].thread`), and then no run is created. "
        "The owner's run quota counts the whole batch (429 too_many_runs: all or none). An "
        "Idempotency-Key covers the whole batch: the same key and body return the same "
        "runs (200), the same key with another body is a 422 idempotency_key_reused.",
        request=RunBatchCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: RunBatchResultSerializer,
            200: RunBatchResultSerializer,
            **error_responses(402, 409, 422),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        agent = agent_to_run(request.user, slug)
        body = RunBatchCreateSerializer(data=request.data)
        if not body.is_valid():
            raise ValidationError(error_paths(body.errors))
        key = idempotency_key_of(request)
        items = [
            BatchItem(
                input=item["input"],
                thread=item.get("thread"),
                limits=dict(item["limits"]) if "limits" in item else None,
                metadata=dict(item["metadata"]) if "metadata" in item else None,
            )
            for item in body.validated_data["inputs"]
        ]
        ids, created = run_batch_create(
            agent=agent, owner=request.user, items=items, idempotency_key=key
        )
        return Response(
            {"runs": [str(run_id) for run_id in ids]},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


@extend_schema_view(
    get=extend_schema(
        summary="List runs",
        description="Your runs (everyone's with agents.view_run), newest first, by cursor. "
        "The filters are validated: an unknown status or agent, a malformed date or an "
        "empty value is a 400 naming the parameter, never an empty list.",
    )
)
class RunListView(ListAPIView):
    """Runs, newest first, by cursor; filters validated by ``agents.filters.RunFilter``."""

    serializer_class = RunSerializer
    queryset = Run.objects.none()  # for the schema; get_queryset answers requests
    filter_backends = [DjangoFilterBackend]
    filterset_class = RunFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self) -> Any:
        return run_list(self.request.user).select_related("owner")


@extend_schema_view(
    get=extend_schema(
        summary="Read a run",
        description="Status, input, output, error, usage, the agent version it ran with and "
        "links. Another user's run is a 404 unless you hold agents.view_run.",
    )
)
class RunDetailView(RetrieveAPIView):
    serializer_class = RunSerializer
    lookup_url_kwarg = "run_id"

    def get_object(self) -> Any:
        run = run_get(self.request.user, self.kwargs["run_id"])
        if run is None:
            raise NotFoundError("not_found", "No such run.")
        return run


class RunEventsView(APIView):
    @extend_schema(
        summary="List a run's stored events",
        description="Events with seq > after, at most limit (1-1000), oldest first; "
        "next_after and has_more page on. The same envelopes the streams send.",
        parameters=[EventsQuerySerializer],
        responses=EventsPageSerializer,
    )
    def get(self, request: Request, run_id: str) -> Response:
        run = run_get(request.user, run_id)
        if run is None:
            raise NotFoundError("not_found", "No such run.")
        query = EventsQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        events = run_event_list(run.id, after=after, limit=limit)
        next_after = events[-1]["seq"] if events else after
        return Response(
            {
                "run": str(run.id),
                "status": run.status,
                "events": events,
                "next_after": next_after,
                "has_more": len(events) == limit,
            }
        )


class RunCancelView(APIView):
    @extend_schema(
        summary="Cancel a run",
        description="200 once cancelled, 202 while a worker is stopping it; repeating it is "
        "harmless. A run that already ended otherwise is a 409 run_finished. Cancelling "
        "another user's run takes agents.change_run.",
        request=None,
        responses={
            200: CancelResultSerializer,
            202: CancelResultSerializer,
            **error_responses(409),
        },
    )
    def post(self, request: Request, run_id: str) -> Response:
        # Cancelling someone else's run is a change to it, not a look at it.
        run = run_get(request.user, run_id, perm="agents.change_run")
        if run is None:
            raise NotFoundError("not_found", "No such run.")
        result = run_cancel(run_id=run.id, actor=request.user)
        code = status.HTTP_200_OK if result == "cancelled" else status.HTTP_202_ACCEPTED
        return Response({"run": str(run.id), "status": result}, status=code)


class ThreadCreateView(APIView):
    @extend_schema(request=ThreadCreateSerializer, responses={201: ThreadSerializer})
    def post(self, request: Request) -> Response:
        body = ThreadCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent = agent_list(request.user).filter(slug=body.validated_data["agent"]).first()
        if agent is None:
            raise NotFoundError("agent_not_found", "No such agent.")
        thread = thread_create(
            agent=agent, owner=request.user, title=body.validated_data.get("title", "")
        )
        return Response(ThreadSerializer(thread).data, status=status.HTTP_201_CREATED)
