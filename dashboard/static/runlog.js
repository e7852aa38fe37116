// Run page: poll the run's JSON while it is going and update banner, state, times, buttons,
// files and the log tail, so a finished run never still offers "Cancel run".
(function () {
  "use strict";
  var facts = document.getElementById("run-facts");
  if (!facts || facts.dataset.finished === "true") { return; }
  var url = facts.dataset.pollUrl;
  var log = document.getElementById("run-log");
  function set(id, text) { var el = document.getElementById(id); if (el) { el.textContent = text; } }
  // "2026-12-06T16:56:22+00:00" -> "2026-12-06 16:56:22 UTC", as the server renders it.
  function utc(iso) { return iso ? iso.replace("T", " ").replace(/(\.\d+)?\+00:00$/, "") + " UTC" : "—"; }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return "—"; }
    var s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    if (h) { return h + "h " + pad(m) + "m " + pad(s) + "s"; }
    if (m) { return m + "m " + pad(s) + "s"; }
    return s + "s";
  }
  function render(run) {
    var state = document.getElementById("run-state");
    state.textContent = run.state;
    state.className = "state state-" + run.state;
    var banner = document.getElementById("run-banner");
    if (banner) {
      banner.textContent = run.banner;
      banner.className = "flash state-banner state-banner-" + run.state;
    }
    set("run-started", utc(run.started_at));
    set("run-finished", utc(run.finished_at));
    set("run-duration", duration(run.duration_seconds));
    set("run-exit", run.exit_code === null ? "—" : String(run.exit_code));
    set("run-reason", run.reason || "—");
    var hint = document.getElementById("run-exit-hint");
    if (hint) { hint.textContent = run.exit_hint || ""; hint.hidden = !run.exit_hint; }
    if (run.state !== "scheduled") {
      var noService = document.getElementById("run-no-service");
      if (noService) { noService.hidden = true; }
    }
    if (run.finished) {
      var cancel = document.getElementById("run-cancel");
      if (cancel) { cancel.hidden = true; }
    }
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
    log.textContent = run.log;
    if (atBottom) { log.scrollTop = log.scrollHeight; }
    var list = document.getElementById("run-files");
    list.textContent = "";
    run.published_files.forEach(function (file) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = file.url;
      a.textContent = file.path;
      li.appendChild(a);
      list.appendChild(li);
    });
    if (!run.published_files.length) {
      var none = document.createElement("li");
      none.className = "none";
      none.textContent = run.published_files_note;
      list.appendChild(none);
    }
  }
  function poll() {
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (run) {
        render(run);
        if (run.finished) { facts.dataset.finished = "true"; set("log-status", ""); return; }
        setTimeout(poll, 1500);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1000);
})();
