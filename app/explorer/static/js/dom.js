// DOM construction where user content can only ever be text.
// h(tag, props, ...children): strings become text nodes (never parsed as markup);
// props set attributes by name, except `on` ({event: handler}) and `class`.
// There is no innerHTML anywhere in the explorer.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, props, children) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (/^on/i.test(name)) {
      throw new Error("event handlers go in props.on, never in attributes");
    } else if (name === "value" && "value" in element) {
      element.value = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

export function s(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

export function clear(element) {
  while (element.firstChild) element.removeChild(element.firstChild);
  return element;
}

export function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "-";
  return Number(x).toPrecision(digits);
}

export function pct(x) {
  return `${(100 * x).toFixed(1)}%`;
}

export function seconds(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "-";
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

// A topic as shown everywhere: "T3" or "T3 · label".
export function topicName(topic, labels) {
  const label = labels && labels[String(topic)];
  return label ? `T${topic} · ${label}` : `T${topic}`;
}

export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac"];
export function topicColor(topic) {
  return PALETTE[topic % PALETTE.length];
}
