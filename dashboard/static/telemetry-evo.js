/* The evolution view: percentiles, mean and submissions of a metric over build IDs or dates,
   with a hint where the median moved more than its submissions make plausible. */
"use strict";
(function () {
  const form = document.getElementById("tm-form");
  const canvas = document.getElementById("tm-chart");
  const submissionsCanvas = document.getElementById("tm-submissions");
  const PERCENTILES = ["5", "25", "50", "75", "95"];
  const DIMENSIONS = ["os", "os_version", "architecture", "application", "reason", "build_id"];
  const COLORS = ["#9bb3e6", "#5f85d6", "#2457c5", "#5f85d6", "#9bb3e6"];
  let filters = null;
  let charts = [];
  let shown = null;
  let pending = 0;

  function versionRange(state) {
    return state.get("vmin") || state.get("vmax") ? `${state.get("vmin") || ""}..${state.get("vmax") || ""}` : "";
  }

  function query(state) {
    const params = new URLSearchParams({ metric: state.get("metric") || "", channel: state.get("channel") || "", by: state.get("by") || "build_id" });
    if (versionRange(state)) params.set("version", versionRange(state));
    for (const d of DIMENSIONS) if (state.get(d)) params.set(d, state.get(d));
    return params;
  }

  function fillVersions(channel) {
    for (const name of ["vmin", "vmax"]) TM.fillSelect(form.elements[name], filters.versions[channel] || []);
  }

  async function update() {
    const state = TM.remember(form);
    TM.describe(filters, state.get("metric"));
    if (!state.get("metric") || !state.get("channel")) {
      TM.status("Pick a metric and a channel.");
      return;
    }
    const ticket = ++pending;
    TM.status("Loading…");
    try {
      const answer = await TM.api("evolution", query(state));
      if (ticket !== pending) return;
      shown = answer;
      draw(state);
      TM.status("");
    } catch (error) {
      if (ticket !== pending) return;
      shown = null;
      draw(state);
      TM.status(error.message, true);
    }
  }

  function draw(state) {
    charts.forEach((c) => c.destroy());
    charts = [];
    canvas.dataset.points = "0";
    const hints = document.getElementById("tm-hints");
    hints.replaceChildren();
    if (!shown) return;
    const key = shown.by;
    const labels = shown.points.map((p) => p[key]);
    const lines = PERCENTILES.map((p, i) => ({
      label: p === "50" ? "median" : `${p}th`,
      data: shown.points.map((point) => point.percentiles[p]),
      borderColor: COLORS[i],
      backgroundColor: COLORS[i],
      pointRadius: 2,
    }));
    lines.push({ label: "mean", data: shown.points.map((p) => p.mean), borderColor: "#d66e1e", backgroundColor: "#d66e1e", borderDash: [4, 3], pointRadius: 2 });
    const options = { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true } } };
    charts.push(new Chart(canvas, { type: "line", data: { labels, datasets: lines }, options }));
    charts.push(
      new Chart(submissionsCanvas, {
        type: "bar",
        data: { labels, datasets: [{ label: "submissions", data: shown.points.map((p) => p.submissions), backgroundColor: "#8a94a6" }] },
        options: { ...options, plugins: { legend: { display: false } } },
      }),
    );
    canvas.dataset.points = String(labels.length);
    shown.points.forEach((point, i) => {
      if (!point.regression) return;
      const before = shown.points[i - 1];
      const item = document.createElement("li");
      const direction = point.regression.shift > 0 ? "up" : "down";
      item.textContent = `Median ${direction} from ${TM.number(before.percentiles["50"])} to ${TM.number(point.percentiles["50"])} between ${before[key]} and ${point[key]} (${TM.number(point.regression.z)} standard errors). `;
      if (key === "build_id") {
        const compare = new URLSearchParams({ metric: shown.metric, channel: shown.channel, version: versionRange(state) || "..", build_id: before[key], compare: "1", b_build_id: point[key] });
        const link = document.createElement("a");
        link.href = `dist?${compare}`;
        link.textContent = "compare two builds";
        item.append(link);
      }
      hints.append(item);
    });
    if (!hints.children.length) {
      const item = document.createElement("li");
      item.textContent = "No implausible shift of the median between consecutive points.";
      hints.append(item);
    }
  }

  function downloadCsv() {
    if (!shown) return;
    const header = [shown.by, "submissions", "mean", ...PERCENTILES.map((p) => `p${p}`)];
    const rows = shown.points.map((p) => [p[shown.by], p.submissions, p.mean, ...PERCENTILES.map((q) => p.percentiles[q])]);
    TM.download(`${shown.metric}-evolution.csv`, "text/csv", TM.csv([header, ...rows]));
  }

  function downloadJson() {
    if (shown) TM.download(`${shown.metric}-evolution.json`, "application/json", JSON.stringify(shown, null, 1));
  }

  async function start() {
    filters = await TM.loadFilters();
    if (!filters) return;
    TM.fillCommon(form, filters);
    TM.fillSelect(form.elements.channel, filters.channels);
    const state = new URLSearchParams(window.location.search);
    if (!state.get("metric")) {
      state.set("metric", filters.metrics.some((m) => m.name === "GC_MS") ? "GC_MS" : filters.metrics[0].name);
    }
    if (!state.get("channel")) state.set("channel", filters.channels[0]);
    fillVersions(state.get("channel"));
    TM.writeState(form, state);
    form.addEventListener("change", (event) => {
      if (event.target.name === "channel") fillVersions(event.target.value);
      update();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      update();
    });
    document.getElementById("tm-csv").addEventListener("click", downloadCsv);
    document.getElementById("tm-json").addEventListener("click", downloadJson);
    update();
  }

  start();
})();
