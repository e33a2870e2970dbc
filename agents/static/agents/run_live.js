// Live view of a run in the admin: follows /ws/runs/<uuid>/ with the session cookie,
// appends events to the server-rendered timeline, resumes with ?after=<last seq> after any
// drop, and sends {"type": "cancel"} from the cancel button. Protocol: docs/streaming.md.
// On every run.* and usage event it re-reads the run's fields from the summary endpoint, so
// status, times, usage, output and child runs are current without a reload.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("run-live-config").textContent);
  const timeline = document.getElementById("run-timeline");
  const state = document.getElementById("run-live-state");
  const cancelForm = document.getElementById("run-cancel-form");
  const filter = document.getElementById("run-timeline-filter");
  const TERMINAL = new Set(["run.succeeded", "run.failed", "run.cancelled", "run.timed_out", "run.blocked"]);
  const FINAL_CODES = new Set([1000, 4400, 4401, 4403, 4404]);
  let after = config.after;
  let finished = config.finished;
  let socket = null;
  let retryMs = 500;
  // The last message item, while its deltas are still arriving.
  let openMessage = null;
  const last = timeline.querySelector(".tl-message:last-of-type .tl-text");
  if (last && timeline.lastElementChild && timeline.lastElementChild.classList.contains("tl-message")) {
    openMessage = last;
  }

  function clock(at) {
    // "2026-01-01T12:00:00.123Z" -> "12:00:00.123" in the page's time zone setting (UTC).
    return at ? at.slice(11, 23) : "";
  }

  function item(kind, seq, label, at) {
    const empty = timeline.querySelector(".tl-empty");
    if (empty) empty.remove();
    const div = document.createElement("div");
    div.className = "tl-item tl-" + kind;
    div.dataset.seq = seq;
    div.dataset.kind = kind;
    const tag = document.createElement("span");
    tag.className = "tl-seq";
    tag.textContent = "#" + seq + " " + clock(at) + (label ? " " + label : "");
    div.appendChild(tag);
    timeline.appendChild(div);
    return div;
  }

  function messageText(seq, at) {
    if (!openMessage) {
      const div = item("message", seq, "message", at);
      openMessage = document.createElement("span");
      openMessage.className = "tl-text";
      div.appendChild(openMessage);
    }
    return openMessage;
  }

  function render(event) {
    if (event.type === "message.delta") {
      messageText(event.seq, event.at).textContent += event.data.delta;
      return;
    }
    if (event.type === "message.completed") {
      messageText(event.seq, event.at).textContent = event.data.content;
      openMessage = null;
      return;
    }
    openMessage = null;
    const div = item(event.type.split(".")[0], event.seq, "", event.at);
    const name = document.createElement("strong");
    name.textContent = event.type;
    div.appendChild(name);
    const data = Object.assign({}, event.data || {});
    if (event.type === "run.succeeded") delete data.output; // shown once, under Output
    if (Object.keys(data).length) {
      const body = document.createElement("pre");
      body.textContent = JSON.stringify(data);
      div.appendChild(body);
    }
    if (event.type === "run.retrying" && event.data && event.data.discard_from_seq) {
      // The earlier attempt's partial output will be produced again: strike it through
      // (docs/streaming.md), so the page never shows the text twice as if it were new.
      for (const old of timeline.querySelectorAll(".tl-item")) {
        const seq = Number(old.dataset.seq);
        if (seq >= event.data.discard_from_seq && seq < event.seq) old.classList.add("tl-discarded");
      }
    }
    if (event.type.startsWith("run.")) setState(event.type.slice(4));
    if (event.type.startsWith("run.") || event.type === "usage" || event.type === "tool.result") refresh();
  }

  function setState(status) {
    state.textContent = status;
    state.dataset.status = status;
    state.className = "sy-badge sy-status-" + status;
  }

  function runLink(prefix, run) {
    const a = document.createElement("a");
    a.href = run.url;
    a.className = "sy-runlink";
    a.textContent = run.short;
    const span = document.createElement("span");
    span.append(prefix + " ", a, " (" + run.agent + ", " + run.status + ")");
    return span;
  }

  function foldFinalAnswer(output) {
    const messages = timeline.querySelectorAll(".tl-message");
    const lastMessage = messages[messages.length - 1];
    if (!output || !lastMessage) return;
    const text = lastMessage.querySelector(".tl-text");
    if (!text || text.textContent !== output) return;
    lastMessage.classList.add("tl-final");
    text.classList.add("tl-note");
    text.textContent = "the answer, shown under Output";
  }

  // Swap every field of the page with the run as stored now; the last call wins.
  let refreshing = 0;
  function refresh() {
    const ticket = ++refreshing;
    fetch(config.summaryUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (summary) {
        if (!summary || ticket !== refreshing) return;
        document.querySelectorAll("#run-live [data-field]").forEach(function (el) {
          const name = el.dataset.field;
          if (!(name in summary)) return;
          if (name === "status") { setState(summary.status); return; }
          const value = summary[name];
          el.textContent = value === "" || value === null ? "-" : value;
          if (name === "error") el.hidden = !value;
        });
        const relations = document.getElementById("run-relations");
        const parent = document.getElementById("run-parent");
        const children = document.getElementById("run-children");
        parent.replaceChildren(summary.parent ? runLink("Called by", summary.parent) : "");
        children.replaceChildren.apply(children, summary.children.map(function (child) {
          const li = document.createElement("li");
          li.appendChild(runLink("Delegated to", child));
          return li;
        }));
        relations.hidden = !summary.parent && summary.children.length === 0;
        if (summary.terminal) {
          foldFinalAnswer(summary.output);
          document.getElementById("run-live").dataset.synced = summary.status;
        }
      })
      .catch(function () { /* the next run event retries */ });
  }

  function applyFilter() {
    filter.querySelectorAll("input[type=checkbox]").forEach(function (box) {
      timeline.classList.toggle("hide-" + box.value, !box.checked);
    });
  }

  function finish() {
    finished = true;
    if (cancelForm) cancelForm.hidden = true;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + config.wsPath + "?after=" + after);
    socket.onopen = function () { retryMs = 500; };
    socket.onmessage = function (message) {
      const event = JSON.parse(message.data);
      if (event.type === "ping" || event.type === "pong") return;
      if (event.type === "cancel.accepted") { setState(event.status); return; }
      if (event.type === "error") { state.textContent = event.error.code; return; }
      if (typeof event.seq !== "number" || event.seq <= after) return;
      after = event.seq;
      render(event);
      if (TERMINAL.has(event.type)) finish();
    };
    socket.onclose = function (close) {
      socket = null;
      if (finished || FINAL_CODES.has(close.code)) {
        if (close.code >= 4400) state.textContent = "stream refused (" + close.code + ")";
        return;
      }
      // 4503 (server going away), 4408 (too slow), 4500, a dropped network: resume.
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    };
  }

  if (cancelForm) {
    cancelForm.addEventListener("submit", function (e) {
      if (socket && socket.readyState === WebSocket.OPEN) {
        e.preventDefault();
        socket.send(JSON.stringify({ type: "cancel" }));
      }
    });
  }
  if (filter) filter.addEventListener("change", applyFilter);
  if (!finished) connect();
  else document.getElementById("run-live").dataset.synced = config.status;
})();
