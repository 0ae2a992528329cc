// Bar charts drawn as SVG by the page itself: nothing is loaded from elsewhere, and the strict
// Content Security Policy holds (attributes only, no inline styles or scripts).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 900;
const HEIGHT = 180;
const BOTTOM = 20;  // room for day labels

function element(name, attributes = {}, text = "") {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text) node.textContent = text;
  return node;
}

// series: [{label, color, values: [number per day]}]; stacked: one bar per day made of every
// series; otherwise the series' bars stand side by side. Each bar has a <title> (hover text).
export function barChart(container, { days, dayLabel, series, stacked, title }) {
  const totals = days.map((_, index) => stacked
    ? series.reduce((sum, one) => sum + one.values[index], 0)
    : Math.max(0, ...series.map((one) => one.values[index])));
  const top = Math.max(1, ...totals);
  const slot = WIDTH / Math.max(1, days.length);
  const svg = element("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img",
                               "aria-label": title, class: "chart" });
  const scale = (value) => (value / top) * (HEIGHT - BOTTOM - 4);
  days.forEach((day, index) => {
    let base = HEIGHT - BOTTOM;
    series.forEach((one, which) => {
      const value = one.values[index];
      if (!value) return;
      const height = scale(value);
      const width = stacked ? slot * 0.7 : (slot * 0.8) / series.length;
      const x = index * slot + (stacked ? slot * 0.15 : slot * 0.1 + which * width);
      const y = stacked ? base - height : HEIGHT - BOTTOM - height;
      const bar = element("rect", { x, y, width, height, fill: one.color });
      bar.appendChild(element("title", {}, `${dayLabel(day)} · ${one.label}: ${value}`));
      svg.appendChild(bar);
      if (stacked) base -= height;
    });
    if (index % Math.ceil(days.length / 6) === 0) {
      svg.appendChild(element("text", { x: index * slot + 2, y: HEIGHT - 5,
                                        class: "chart-label" }, dayLabel(day)));
    }
  });
  svg.appendChild(element("text", { x: WIDTH - 2, y: 12, "text-anchor": "end",
                                    class: "chart-label" }, String(top)));
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
