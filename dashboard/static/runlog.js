// Run page: poll the run's JSON while it is going and update state, times, files and log tail.
(function () {
  "use strict";
  var facts = document.getElementById("run-facts");
  if (!facts || facts.dataset.finished === "true") { return; }
  var url = facts.dataset.pollUrl;
  var log = document.getElementById("run-log");
  function set(id, text) { var el = document.getElementById(id); if (el) { el.textContent = text; } }
  function render(run) {
    var state = document.getElementById("run-state");
    state.textContent = run.state;
    state.className = "state state-" + run.state;
    set("run-started", run.started_at || "—");
    set("run-finished", run.finished_at || "—");
    set("run-duration", run.duration);
    set("run-exit", run.exit_code === null ? "—" : String(run.exit_code));
    set("run-reason", run.reason || "—");
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
    log.textContent = run.log;
    if (atBottom) { log.scrollTop = log.scrollHeight; }
    var list = document.getElementById("run-files");
    if (run.published_files.length) {
      list.textContent = "";
      run.published_files.forEach(function (file) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = file.url;
        a.textContent = file.path;
        li.appendChild(a);
        list.appendChild(li);
      });
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
