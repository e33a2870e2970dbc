#!/usr/bin/env bash
# Serve Switchyard with daphne; with REDIS_URL set, also a Celery worker and beat.
# Ctrl-C (or SIGTERM) stops them all.
set -euo pipefail
HOST=${1:-127.0.0.1}
PORT=${2:-8000}
PY=${VENV:-.venv}/bin/python
pids=()

stop_all() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true  # a supervised process's children
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap stop_all INT TERM EXIT

# Keep the worker running: like systemd's Restart=always in production, because Celery's
# worker can exit when it loses its broker connection (the reaper re-queues its runs).
supervise() {
  while :; do "$@" || true; sleep 1; done
}

if [ -n "${REDIS_URL:-}" ]; then
  # Control work (reaper, webhooks, token purge) first, then runs (docs/runtime.md).
  queue=${CELERY_QUEUE:-switchyard}
  WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-9808} \
    supervise "$PY" -m celery -A config worker -l info --pool threads --concurrency 4 \
    -Q "$queue.control,$queue" &
  pids+=($!)
  "$PY" -m celery -A config beat -l info -s "${VAR_DIR:-var}/celerybeat-schedule" &
  pids+=($!)
  echo "Celery worker and beat started (REDIS_URL is set); worker metrics on" \
    "http://127.0.0.1:${WORKER_METRICS_PORT:-9808}/metrics"
fi

echo "Switchyard on http://$HOST:$PORT/  (admin: /admin/, API: /api/v1/, docs: /api/docs/)"
# A Twisted endpoint rather than -b/-p: those listen with a backlog of 50, and a burst of
# connections beyond it is reset by the kernel (docs/configuration.md, HTTP_LISTEN_BACKLOG).
"$PY" -m daphne -e "tcp:port=$PORT:interface=${HOST//:/\\:}:backlog=${HTTP_LISTEN_BACKLOG:-2048}" \
  config.asgi:application &
pids+=($!)
wait -n "${pids[@]}"
