// The rule editor: show only the selected kind's fields, and "Test pattern" for regex rules.
// Without this script every kind's fields show and the server uses the selected kind's.
(function () {
  "use strict";

  function row(el) {
    return el.closest(".form-group") || el.closest("form");
  }

  function showKind(select) {
    const kind = select.value;
    row(select).querySelectorAll("fieldset.sy-rule-params").forEach(function (fs) {
      fs.hidden = !fs.classList.contains("sy-rule-kind-" + kind);
    });
  }

  function field(scope, suffix) {
    return scope.querySelector('[name$="-' + suffix + '"]');
  }

  function render(out, text, data) {
    out.textContent = "";
    if (data.error) {
      out.className = "sy-test-result sy-test-error";
      out.textContent = data.error;
      return;
    }
    out.className = "sy-test-result";
    const count = document.createElement("div");
    count.textContent = data.matches.length + " match(es)";
    out.appendChild(count);
    const sample = document.createElement("pre");
    let at = 0;
    data.matches.forEach(function (m) {
      sample.appendChild(document.createTextNode(text.slice(at, m.start)));
      const mark = document.createElement("mark");
      mark.textContent = text.slice(m.start, m.end);
      sample.appendChild(mark);
      at = m.end;
    });
    sample.appendChild(document.createTextNode(text.slice(at)));
    out.appendChild(sample);
  }

  function test(button) {
    const scope = row(button);
    const area = field(scope, "regex_test");
    const out = scope.querySelector(".sy-test-result");
    const body = new URLSearchParams();
    body.set("pattern", field(scope, "regex_pattern").value);
    body.set("text", area.value);
    const limit = field(scope, "regex_max_match_length").value;
    if (limit) body.set("max_match_length", limit);
    if (field(scope, "regex_case_sensitive").checked) body.set("case_sensitive", "on");
    const token = document.querySelector("input[name=csrfmiddlewaretoken]");
    fetch(area.dataset.syTestUrl, {
      method: "POST",
      headers: { "X-CSRFToken": token ? token.value : "" },
      body: body,
      credentials: "same-origin",
    })
      .then(function (r) { return r.json(); })
      .then(function (data) { render(out, area.value, data); })
      .catch(function () { render(out, "", { error: "The test could not be run." }); });
  }

  function addTestButton(area) {
    if (area.name.indexOf("__prefix__") !== -1 || area.dataset.syTestReady) return;
    area.dataset.syTestReady = "1";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sy-test-button";
    button.textContent = "Test pattern";
    const out = document.createElement("div");
    out.className = "sy-test-result";
    out.setAttribute("aria-live", "polite");
    area.after(button, out);
  }

  function setUp(scope) {
    scope.querySelectorAll("select[data-sy-rule-kind]").forEach(showKind);
    scope.querySelectorAll("textarea[data-sy-test-url]").forEach(addTestButton);
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-sy-rule-kind]")) showKind(event.target);
  });
  document.addEventListener("click", function (event) {
    const button = event.target.closest(".sy-test-button");
    if (!button) return;
    event.preventDefault();
    test(button);
  });
  // A rule added with "Add another" is a copy of the empty form: set it up too.
  document.addEventListener("formset:added", function (event) { setUp(event.target); });
  document.addEventListener("DOMContentLoaded", function () { setUp(document); });
})();
