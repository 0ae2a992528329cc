// Bar charts drawn as SVG by the page itself: nothing is loaded from elsewhere, and the strict
// Content Security Policy holds (attributes only, no inline styles or scripts).
//
// The drawing is as wide as its box in CSS pixels (not a fixed canvas scaled down), so labels
// keep their size on a phone; a y-axis with round ticks in the locale's numbers sits on the
// left, outside the bars, and day labels are spaced to fit.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 190;
const LEFT = 60;  // room for the tick labels
const RIGHT = 8;
const TOP = 10;
const BOTTOM = 24;  // room for day labels
const DAY_LABEL_WIDTH = 56;
const TICKS = 4;

function element(name, attributes = {}, text = "") {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text) node.textContent = text;
  return node;
}

// A round step for about `TICKS` ticks up to `largest`: 1, 2 or 5 times a power of ten.
export function tickStep(largest) {
  const raw = Math.max(1, largest) / TICKS;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].find((factor) => factor * magnitude >= raw) * magnitude;
  return Math.max(1, step);
}

// series: [{label, color, values: [number per day]}]; stacked: one bar per day made of every
// series; otherwise the series' bars stand side by side. Each bar has a <title> (hover text).
// format: a number in the locale's way (1.234 in Turkish).
export function barChart(container, { days, dayLabel, series, stacked, title, format }) {
  const width = Math.max(300, Math.round(container.clientWidth || 900));
  const totals = days.map((_, index) => stacked
    ? series.reduce((sum, one) => sum + one.values[index], 0)
    : Math.max(0, ...series.map((one) => one.values[index])));
  const step = tickStep(Math.max(0, ...totals));
  const top = step * Math.max(1, Math.ceil(Math.max(0, ...totals) / step));
  const plot = { width: width - LEFT - RIGHT, height: HEIGHT - TOP - BOTTOM };
  const svg = element("svg", { viewBox: `0 0 ${width} ${HEIGHT}`, width, height: HEIGHT,
                               role: "img", "aria-label": title, class: "chart" });
  const y = (value) => TOP + plot.height - (value / top) * plot.height;
  for (let tick = 0; tick <= top; tick += step) {
    svg.appendChild(element("line", { x1: LEFT, x2: width - RIGHT, y1: y(tick), y2: y(tick),
                                      class: tick ? "chart-grid" : "chart-axis" }));
    svg.appendChild(element("text", { x: LEFT - 6, y: y(tick) + 4, "text-anchor": "end",
                                      class: "chart-label" }, format(tick)));
  }
  const slot = plot.width / Math.max(1, days.length);
  const every = Math.max(1, Math.ceil(days.length / Math.max(1, Math.floor(plot.width / DAY_LABEL_WIDTH))));
  days.forEach((day, index) => {
    const left = LEFT + index * slot;
    let base = y(0);
    series.forEach((one, which) => {
      const value = one.values[index];
      if (!value) return;
      const height = Math.max(1, y(0) - y(value));  // a small value stays visible
      const barWidth = stacked ? slot * 0.7 : (slot * 0.8) / series.length;
      const x = left + (stacked ? slot * 0.15 : slot * 0.1 + which * barWidth);
      const bar = element("rect", { x, y: (stacked ? base : y(0)) - height, width: barWidth,
                                    height, fill: one.color });
      bar.appendChild(element("title", {}, `${dayLabel(day)} · ${one.label}: ${format(value)}`));
      svg.appendChild(bar);
      if (stacked) base -= height;
    });
    if (index % every === 0) {
      svg.appendChild(element("text", { x: left + slot / 2, y: HEIGHT - 6, "text-anchor": "middle",
                                        class: "chart-label" }, dayLabel(day)));
    }
  });
  const legend = document.createElement("p");
  legend.className = "legend";
  for (const one of series) {
    const key = document.createElement("span");
    key.className = "legend-key";
    const swatch = element("svg", { width: 12, height: 12, "aria-hidden": "true" });
    swatch.appendChild(element("rect", { width: 12, height: 12, fill: one.color }));
    key.append(swatch, " " + one.label);
    legend.appendChild(key);
  }
  container.replaceChildren(svg, legend);
}
