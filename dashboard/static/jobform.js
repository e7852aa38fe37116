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
    // The server's error for the name (same wording as the live check) is shown once: the live
    // check starts only when the name is edited, and then replaces it.
    var serverErrors = document.querySelectorAll("#field-name .error");
    name.addEventListener("input", function () {
      serverErrors.forEach(function (el) { el.hidden = true; });
      clearTimeout(timer);
      timer = setTimeout(check, 250);
    });
    if (name.value && !serverErrors.length) { check(); }
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
