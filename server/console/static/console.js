// The console's only script (the content security policy allows no inline script): the CSRF header on every
// htmx request, what a form's answer says, the live-update stream, and the grid chart.
"use strict";

document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) {
    event.detail.headers["X-CSRF-Token"] = meta.content;
  }
});

function resultOf(element) {
  const form = element.closest("form");
  return (form || element.parentElement).querySelector("output.result");
}

function say(element, text, failed) {
  const out = resultOf(element);
  if (out) {
    out.textContent = text; // text, never HTML
    out.classList.toggle("error", failed);
  } else if (failed) {
    window.alert(text);
  }
}

document.addEventListener("htmx:afterRequest", (event) => {
  const xhr = event.detail.xhr;
  const element = event.detail.elt;
  if (!xhr || event.detail.requestConfig.verb === "get") {
    return;
  }
  if (xhr.status >= 400) {
    let message = xhr.responseText;
    try {
      message = JSON.parse(xhr.responseText).error || message;
    } catch (e) {
      // not JSON: shown as it came
    }
    say(element, `refused (${xhr.status}): ${message}`, true);
    document.body.dataset.lastRefusal = String(xhr.status);
    return;
  }
  if ((xhr.getResponseHeader("Content-Type") || "").startsWith("text/plain")) {
    say(element, xhr.responseText, false);
  }
  const then = element.dataset.then;
  if (then) {
    window.location.assign(then);
  }
});

function follow() {
  const url = document.body.dataset.live;
  if (!url || !window.EventSource) {
    return;
  }
  const source = new EventSource(url);
  for (const name of ["alarms", "events"]) {
    source.addEventListener(name, () => htmx.trigger(document.body, `live-${name}`));
  }
  source.addEventListener("open", () => { document.body.dataset.liveOpen = "1"; });
}

function chart(canvas) {
  fetch(canvas.dataset.chart, { credentials: "same-origin" })
    .then((r) => r.json())
    .then((data) => {
      const point = (key) => (p) => ({ x: Date.parse(p.t), y: p[key] });
      const times = data.forecast.map((p) => Date.parse(p.t)).concat(data.measured.map((p) => Date.parse(p.t)));
      const span = times.length ? [Math.min(...times), Math.max(...times)] : [];
      const flat = (value) => span.map((x) => ({ x, y: value }));
      const sets = [
        { label: "measured load", data: data.measured.map(point("kw")), borderColor: "#222", pointRadius: 0 },
        { label: "forecast q10", data: data.forecast.map(point("q10")), borderColor: "rgba(30,100,200,0.3)", pointRadius: 0, fill: false },
        { label: "forecast q90 (band from q10)", data: data.forecast.map(point("q90")), borderColor: "rgba(30,100,200,0.3)", backgroundColor: "rgba(30,100,200,0.15)", pointRadius: 0, fill: "-1" },
        { label: "forecast mean", data: data.forecast.map(point("mean")), borderColor: "#1e64c8", pointRadius: 0 },
      ];
      if (data.limits.import_kw !== null && span.length) {
        sets.push({ label: "import limit", data: flat(data.limits.import_kw), borderColor: "#c0392b", borderDash: [6, 4], pointRadius: 0 });
      }
      if (data.limits.export_kw !== null && span.length) {
        sets.push({ label: "export limit", data: flat(-data.limits.export_kw), borderColor: "#e67e22", borderDash: [6, 4], pointRadius: 0 });
      }
      new Chart(canvas, {
        type: "line",
        data: { datasets: sets },
        options: {
          animation: false,
          parsing: false,
          scales: { x: { type: "linear", ticks: { callback: (v) => new Date(v).toISOString().slice(5, 16).replace("T", " ") } }, y: { title: { display: true, text: "kW" } } },
        },
      });
      canvas.dataset.drawn = String(data.forecast.length + data.measured.length);
    });
}

const COLOURS = { active: "#1e7e34", scheduled: "#1e64c8", completed: "#9aa5b1", cancelled: "#c8c8c8" };
let timelineChart = null;

function timeline(canvas) {
  const rows = Array.from(document.querySelectorAll(`${canvas.dataset.timeline} tr[data-event]`));
  const bars = rows.map((tr) => ({ x: [Date.parse(tr.dataset.start), Date.parse(tr.dataset.end)], y: tr.dataset.label }));
  const colours = rows.map((tr) => COLOURS[tr.className] || "#1e64c8");
  const now = Date.now();
  if (timelineChart) {
    timelineChart.destroy();
  }
  timelineChart = new Chart(canvas, {
    type: "bar",
    data: {
      labels: bars.map((b) => b.y),
      datasets: [
        { label: "events", data: bars, backgroundColor: colours, parsing: { xAxisKey: "x", yAxisKey: "y" } },
      ],
    },
    options: {
      indexAxis: "y",
      animation: false,
      plugins: { legend: { display: false } },
      scales: {
        x: {
          type: "linear",
          beginAtZero: false,
          min: Math.min(now, ...bars.map((b) => b.x[0])) - 1800e3,
          max: Math.max(now, ...bars.map((b) => b.x[1])) + 1800e3,
          ticks: { callback: (v) => new Date(v).toISOString().slice(5, 16).replace("T", " ") },
        },
      },
    },
    plugins: [{
      id: "now",
      afterDraw: (c) => {
        const x = c.scales.x.getPixelForValue(now);
        const ctx = c.ctx;
        ctx.save();
        ctx.strokeStyle = "#b02a37";
        ctx.beginPath();
        ctx.moveTo(x, c.chartArea.top);
        ctx.lineTo(x, c.chartArea.bottom);
        ctx.stroke();
        ctx.restore();
      },
    }],
  });
  canvas.dataset.drawn = String(bars.length);
}

document.addEventListener("DOMContentLoaded", () => {
  follow();
  document.querySelectorAll("canvas[data-chart]").forEach(chart);
  document.querySelectorAll("canvas[data-timeline]").forEach(timeline);
});

// a list refreshed by a live update redraws the time line that follows it
document.addEventListener("htmx:afterSettle", () => {
  document.querySelectorAll("canvas[data-timeline]").forEach(timeline);
});
