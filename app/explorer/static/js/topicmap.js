// The intertopic distance map (SVG): circles at the topics' MDS positions, area
// proportional to their share of tokens; hover highlights a topic, click selects it.
import { s, topicName } from "./dom.js";

const SIZE = 440;

export function drawMap(points, labels, { onSelect, onHover }) {
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const span = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys), 1e-9);
  const cx = (Math.max(...xs) + Math.min(...xs)) / 2;
  const cy = (Math.max(...ys) + Math.min(...ys)) / 2;
  const maxRadius = Math.min(50, 0.9 * SIZE / Math.sqrt(Math.max(points.length, 1)));
  const scale = (SIZE - 2 * (maxRadius + 6)) / span;  // the largest circle stays inside
  const maxShare = Math.max(...points.map((p) => p.share), 1e-12);
  const svg = s("svg", { id: "topic-map", viewBox: `0 0 ${SIZE} ${SIZE}`, width: SIZE, height: SIZE, role: "img",
    "aria-label": "Intertopic distance map" },
    s("line", { x1: SIZE / 2, y1: 0, x2: SIZE / 2, y2: SIZE, class: "axis" }),
    s("line", { x1: 0, y1: SIZE / 2, x2: SIZE, y2: SIZE / 2, class: "axis" }));
  const caption = s("text", { x: 8, y: SIZE - 8, class: "map-caption" }, "");
  const circles = new Map();
  const titles = new Map();
  const titleText = (p) => `${topicName(p.topic, labels)}: ${(100 * p.share).toFixed(1)}% of tokens`;
  // Largest first so that small topics stay on top and clickable.
  for (const p of [...points].sort((a, b) => b.share - a.share)) {
    const r = Math.max(4, maxRadius * Math.sqrt(p.share / maxShare));
    const x = SIZE / 2 + (p.x - cx) * scale;
    const y = SIZE / 2 - (p.y - cy) * scale;
    const title = s("title", {}, titleText(p));
    titles.set(p, title);
    const circle = s("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: r.toFixed(1), class: "topic-circle",
      "data-topic": p.topic, tabindex: 0 }, title);
    const number = s("text", { x: x.toFixed(1), y: (y + 4).toFixed(1), class: "topic-number", "data-topic": p.topic }, String(p.topic));
    const group = s("g", { class: "topic-point", "data-topic": p.topic }, circle, number);
    group.addEventListener("mouseenter", () => {
      svg.querySelectorAll(".hover").forEach((e) => e.classList.remove("hover"));
      group.classList.add("hover");
      caption.textContent = `${topicName(p.topic, labels)} · ${(100 * p.share).toFixed(1)}% of tokens`;
      if (onHover) onHover(p.topic);
    });
    group.addEventListener("mouseleave", () => {
      group.classList.remove("hover");
      caption.textContent = "";
      if (onHover) onHover(null);
    });
    group.addEventListener("click", () => onSelect(p.topic));
    circle.addEventListener("keydown", (event) => { if (event.key === "Enter") onSelect(p.topic); });
    circles.set(p.topic, group);
    svg.append(group);
  }
  svg.append(caption);
  return {
    element: svg,
    select(topic) {
      for (const [t, group] of circles) group.classList.toggle("selected", t === topic);
    },
    relabel(newLabels) {
      labels = newLabels;
      for (const [p, title] of titles) title.textContent = titleText(p);
    },
  };
}

// Horizontal bars: rows [{label, value, extra?}] scaled to the largest value; optional
// background values (e.g. a word's overall frequency) drawn behind in grey.
export function drawBars(rows, { id, width = 420, labelWidth = 150, background = null, max: scaleMax = null,
  format = (v) => v.toPrecision(3) } = {}) {
  const rowHeight = 18;
  const barWidth = width - labelWidth - 70;
  const max = scaleMax ?? Math.max(...rows.map((r, i) => Math.max(r.value, background ? background[i] : 0)), 1e-12);
  const svg = s("svg", { id, class: "bars", viewBox: `0 0 ${width} ${rows.length * rowHeight + 4}`, width,
    height: rows.length * rowHeight + 4 });
  rows.forEach((row, i) => {
    const y = i * rowHeight + 2;
    const group = s("g", { class: "bar-row", "data-label": row.label });
    group.append(s("text", { x: labelWidth - 6, y: y + 13, class: "bar-label" }, row.label));
    if (background) {
      group.append(s("rect", { x: labelWidth, y, height: rowHeight - 4, width: (barWidth * background[i] / max).toFixed(1), class: "bar-bg" }));
    }
    group.append(s("rect", { x: labelWidth, y, height: rowHeight - 4, width: Math.max(1, barWidth * row.value / max).toFixed(1),
      class: "bar", fill: row.color || null }));
    group.append(s("text", { x: labelWidth + barWidth + 6, y: y + 13, class: "bar-value" }, format(row.value)));
    if (row.onClick) {
      group.classList.add("clickable");
      group.addEventListener("click", row.onClick);
    }
    svg.append(group);
  });
  return svg;
}

// One document's topic mixture as a stacked horizontal bar (topics under 2% merged).
export function drawMixture(mixture, labels, width = 260) {
  const svg = s("svg", { class: "mixture", viewBox: `0 0 ${width} 14`, width, height: 14 });
  let x = 0;
  const order = mixture.map((w, t) => [w, t]).sort((a, b) => b[0] - a[0]);
  for (const [w, t] of order) {
    if (w < 0.02) break;
    const part = s("rect", { x: x.toFixed(1), y: 0, width: (w * width).toFixed(1), height: 14, class: "mixture-part",
      fill: `hsl(${(t * 137.5) % 360} 55% 55%)`, "data-topic": t }, s("title", {}, `${topicName(t, labels)}: ${(100 * w).toFixed(1)}%`));
    svg.append(part);
    x += w * width;
  }
  return svg;
}
