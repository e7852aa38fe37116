// Schedule a Job form: live job-name check, and show only the day field the frequency needs.
(function () {
  "use strict";
  var name = document.querySelector("input[data-check-url]");
  var status = document.getElementById("name-check");
  var timer = null;
  function check() {
    var value = name.value.trim();
    if (!value) { status.textContent = ""; status.className = "help live"; return; }
    fetch(name.dataset.checkUrl + "?name=" + encodeURIComponent(value), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (name.value.trim() !== value) { return; }
        status.textContent = data.message;
        status.className = "help live " + (data.ok ? "ok" : "bad");
      })
      .catch(function () { status.textContent = ""; });
  }
  if (name && status) {
    name.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(check, 250); });
    if (name.value) { check(); }
  }
  var frequency = document.getElementById("frequency");
  function showDays() {
    var weekly = document.getElementById("field-day_of_week");
    var monthly = document.getElementById("field-day_of_month");
    if (weekly) { weekly.hidden = frequency.value !== "weekly"; }
    if (monthly) { monthly.hidden = frequency.value !== "monthly"; }
  }
  if (frequency) { frequency.addEventListener("change", showDays); showDays(); }
})();
