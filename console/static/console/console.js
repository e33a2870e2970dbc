// The console's small shared behaviours: copy buttons (short run ids carry the full id).
(function () {
  "use strict";
  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain http on a LAN address is not a secure context: the old way still works there.
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    return Promise.resolve();
  }
  document.addEventListener("click", function (event) {
    const button = event.target.closest(".sy-copy[data-copy]");
    if (!button) return;
    event.preventDefault();
    copy(button.dataset.copy).then(function () {
      button.dataset.copied = "1";
      setTimeout(function () { delete button.dataset.copied; }, 1200);
    });
  });
})();
