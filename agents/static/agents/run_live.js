// Live view of a run in the admin: follows /ws/runs/<uuid>/ with the session cookie,
// appends events to the server-rendered timeline, resumes with ?after=<last seq> after any
// drop, and sends {"type": "cancel"} from the cancel button. Protocol: docs/streaming.md.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("run-live-config").textContent);
  const timeline = document.getElementById("run-timeline");
  const state = document.getElementById("run-live-state");
  const cancelForm = document.getElementById("run-cancel-form");
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

  function item(kind, seq, label) {
    const empty = timeline.querySelector(".tl-empty");
    if (empty) empty.remove();
    const div = document.createElement("div");
    div.className = "tl-item tl-" + kind;
    div.dataset.seq = seq;
    const tag = document.createElement("span");
    tag.className = "tl-seq";
    tag.textContent = "#" + seq + (label ? " " + label : "");
    div.appendChild(tag);
    timeline.appendChild(div);
    return div;
  }

  function messageText(seq) {
    if (!openMessage) {
      const div = item("message", seq, "message");
      openMessage = document.createElement("span");
      openMessage.className = "tl-text";
      div.appendChild(openMessage);
    }
    return openMessage;
  }

  function render(event) {
    if (event.type === "message.delta") {
      messageText(event.seq).textContent += event.data.delta;
      return;
    }
    if (event.type === "message.completed") {
      messageText(event.seq).textContent = event.data.content;
      openMessage = null;
      return;
    }
    openMessage = null;
    const div = item(event.type.split(".")[0], event.seq, "");
    const name = document.createElement("strong");
    name.textContent = event.type;
    const body = document.createElement("pre");
    body.textContent = JSON.stringify(event.data, null, 1);
    div.append(name, body);
    if (event.type.startsWith("run.")) setState(event.type.slice(4));
  }

  function setState(status) {
    state.textContent = status;
    state.dataset.status = status;
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
  if (!finished) connect();
})();
