/* The distribution view: one metric's summed histogram for a selection, optionally overlaid
   with a second selection; counts or percent, percentiles, mean, submissions. */
"use strict";
(function () {
  const form = document.getElementById("tm-form");
  const canvas = document.getElementById("tm-chart");
  const PERCENTILES = ["5", "25", "50", "75", "95"];
  const DIMENSIONS = ["os", "os_version", "architecture", "application", "reason", "build_id"];
  let filters = null;
  let chart = null;
  let shown = [];
  let pending = 0;

  function versionsFor(select, channel) {
    const versions = (filters.versions[channel] || []).slice().reverse();
    TM.fillSelect(select, versions);
    if (!select.value && versions.length) select.value = versions[0];
  }

  function selectionA(state) {
    const params = new URLSearchParams({ metric: state.get("metric") || "", channel: state.get("channel") || "", version: state.get("version") || "" });
    for (const d of DIMENSIONS) if (state.get(d)) params.set(d, state.get(d));
    if (state.get("from") || state.get("to")) {
      params.set("dates", `${state.get("from") || filters.dates[0]}..${state.get("to") || filters.dates[filters.dates.length - 1]}`);
    }
    return params;
  }

  function selectionB(state, a) {
    const params = new URLSearchParams(a);
    params.set("channel", state.get("b_channel") || a.get("channel"));
    params.set("version", state.get("b_version") || a.get("version"));
    for (const d of ["build_id", "os"]) {
      if (state.get("b_" + d)) params.set(d, state.get("b_" + d));
    }
    return params;
  }

  function label(params) {
    const parts = [params.get("channel"), params.get("version")];
    for (const d of DIMENSIONS) if (params.get(d)) parts.push(`${d}=${params.get(d)}`);
    if (params.get("dates")) parts.push(params.get("dates"));
    return parts.join(" ");
  }

  async function update() {
    const state = TM.remember(form);
    form.querySelector(".tm-compare").classList.toggle("on", state.get("compare") === "1");
    TM.describe(filters, state.get("metric"));
    if (!state.get("metric") || !state.get("channel") || !state.get("version")) {
      TM.status("Pick a metric, a channel and a version.");
      return;
    }
    const ticket = ++pending;
    const selections = [selectionA(state)];
    if (state.get("compare") === "1") selections.push(selectionB(state, selections[0]));
    TM.status("Loading…");
    try {
      const answers = await Promise.all(selections.map((s) => TM.api("histogram", s)));
      if (ticket !== pending) return;
      shown = answers.map((answer, i) => ({ selection: label(selections[i]), query: selections[i].toString(), ...answer }));
      draw(state.get("mode") === "percent");
      TM.status(shown.length > 1 && shown[0].buckets.join() !== shown[1].buckets.join() ? "The two selections have different bucket layouts: bars are compared by position." : "");
    } catch (error) {
      if (ticket !== pending) return;
      shown = [];
      draw(false);
      TM.status(error.message, true);
    }
  }

  function draw(percent) {
    if (chart) chart.destroy();
    chart = null;
    canvas.dataset.bars = "0";
    const body = document.querySelector("#tm-stats tbody");
    body.replaceChildren();
    if (!shown.length) return;
    const colors = ["rgba(36, 87, 197, 0.75)", "rgba(214, 110, 30, 0.65)"];
    const datasets = shown.map((h, i) => {
      const total = h.counts.reduce((a, b) => a + b, 0) || 1;
      return {
        label: h.selection,
        data: percent ? h.counts.map((c) => (100 * c) / total) : h.counts,
        backgroundColor: colors[i],
        categoryPercentage: 0.9,
        barPercentage: 1.0,
      };
    });
    chart = new Chart(canvas, {
      type: "bar",
      data: { labels: shown[0].buckets.map(String), datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: {
          x: { title: { display: true, text: `bucket lower bound (${shown[0].kind})` } },
          y: { beginAtZero: true, title: { display: true, text: percent ? "% of values" : "count" } },
        },
        plugins: { legend: { display: shown.length > 1 } },
      },
    });
    canvas.dataset.bars = String(shown[0].buckets.length);
    for (const h of shown) {
      const row = document.createElement("tr");
      const cells = [h.selection, h.submissions.toLocaleString("en"), TM.number(h.mean), ...PERCENTILES.map((p) => TM.number(h.percentiles[p]))];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      body.append(row);
    }
  }

  function downloadCsv() {
    if (!shown.length) return;
    const header = ["bucket_lower_bound", ...shown.map((h) => `count ${h.selection}`)];
    const rows = shown[0].buckets.map((b, i) => [b, ...shown.map((h) => h.counts[i])]);
    TM.download(`${shown[0].metric}.csv`, "text/csv", TM.csv([header, ...rows]));
  }

  function downloadJson() {
    if (shown.length) TM.download(`${shown[0].metric}.json`, "application/json", JSON.stringify(shown, null, 1));
  }

  async function start() {
    filters = await TM.loadFilters();
    if (!filters) return;
    TM.fillCommon(form, filters);
    for (const name of ["channel", "b_channel"]) TM.fillSelect(form.elements[name], filters.channels);
    const state = new URLSearchParams(window.location.search);
    if (!state.get("metric")) {
      state.set("metric", filters.metrics.some((m) => m.name === "GC_MS") ? "GC_MS" : filters.metrics[0].name);
    }
    if (!state.get("channel")) state.set("channel", filters.channels[0]);
    versionsFor(form.elements.version, state.get("channel"));
    versionsFor(form.elements.b_version, state.get("b_channel") || state.get("channel"));
    TM.writeState(form, state);
    form.addEventListener("change", (event) => {
      if (event.target.name === "channel") versionsFor(form.elements.version, event.target.value);
      if (event.target.name === "b_channel") versionsFor(form.elements.b_version, event.target.value);
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
