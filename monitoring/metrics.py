"""The platform's own Prometheus metrics (django-prometheus adds request and DB ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

runs_created = Counter("switchyard_runs_created_total", "Runs created", ["agent"])
run_hand_over_failures = Counter(
    "switchyard_run_hand_over_failures_total",
    "Runs the broker refused to take (the dispatcher hands them over later)",
)
run_transitions = Counter(
    "switchyard_run_transitions_total", "Run status changes, by target status", ["status"]
)
runs_finished = Counter(
    "switchyard_runs_finished_total", "Runs that reached a terminal status", ["agent", "status"]
)
run_duration = Histogram(
    "switchyard_run_duration_seconds",
    "Wall time from start to terminal status",
    ["agent"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
run_queue_wait = Histogram(
    "switchyard_run_queue_wait_seconds",
    "Time from creation to start (waiting for a worker or a concurrency slot)",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
tokens = Counter("switchyard_tokens_total", "Model tokens", ["agent", "direction"])
cost_usd = Counter("switchyard_cost_usd_total", "Model cost in USD, from the ledger", ["agent"])
model_calls = Counter(
    "switchyard_model_calls_total", "Model requests, by price source", ["agent", "price_source"]
)
tool_calls = Counter("switchyard_tool_calls_total", "Tool calls", ["tool", "outcome"])
events_emitted = Counter("switchyard_run_events_total", "Run events stored")
http_requests_shed = Counter(
    "switchyard_http_requests_shed_total",
    "HTTP requests answered 503 + Retry-After because the server was full (admission)",
)
runs_claim_lost = Counter(
    "switchyard_runs_claim_lost_total",
    "Attempts that stopped because another attempt owned their run (fencing)",
)
ws_connections = Gauge("switchyard_websocket_connections", "Open run-stream WebSockets")
events_sent = Counter(
    "switchyard_stream_events_sent_total", "Events sent to stream clients", ["transport"]
)
sse_connections = Gauge("switchyard_sse_connections", "Open run-stream SSE responses")
events_replayed = Counter(
    "switchyard_stream_events_replayed_total",
    "Events sent to stream clients from the log (replay and catch-up)",
    ["transport"],
)
stream_clients_dropped = Counter(
    "switchyard_stream_clients_dropped_total",
    "Stream clients disconnected by the server, by reason (too_slow)",
    ["transport", "reason"],
)
