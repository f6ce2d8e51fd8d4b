// Panels of the model view: a word's topics, the mixture of a pasted text, the export.
import { api, enc } from "./api.js";
import { h, clear, topicName, pct } from "./dom.js";
import { drawBars } from "./topicmap.js";

export function wordPanel(modelId, labels, onTopic, listeners) {
  const input = h("input", { type: "search", id: "word-input", placeholder: "a term, e.g. cat", maxlength: 200 });
  const result = h("div", { id: "word-result" });
  let last = null;
  const draw = () => {
    if (!last) return;
    const rows = last.topics.slice(0, 15).map((t) => ({ label: topicName(t.topic, labels()), value: t.topic_share,
      onClick: () => onTopic(t.topic) }));
    clear(result).append(h("p", {}, `Topics that use “${last.term}” (share of its uses):`),
      rows.length ? drawBars(rows, { id: "word-bars", format: pct }) : h("p", {}, "No topic uses it."));
  };
  listeners.push(draw);
  const form = h("form", { id: "word-form" }, input, " ", h("button", { type: "submit" }, "Look up"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.value.trim()) return;
    try {
      last = await api.get(`/v1/models/${enc(modelId)}/terms/${enc(input.value.trim())}`);
      draw();
    } catch (error) {
      last = null;
      clear(result).append(h("p", { class: "error" }, error.message));
    }
  });
  return h("div", { class: "card", id: "word-panel" }, h("h3", {}, "A word"), form, result);
}

export function inferPanel(modelId, labels, onTopic, listeners) {
  const text = h("textarea", { id: "infer-text", rows: 5, cols: 50, placeholder: "paste a text" });
  const result = h("div", { id: "infer-result" });
  let last = null;
  const draw = () => {
    if (!last) return;
    const mixture = last.doc_topic[0].map((w, t) => ({ t, w })).sort((a, b) => b.w - a.w).slice(0, 10);
    clear(result).append(h("p", {}, `${last.n_known_tokens[0]} known tokens. Topic mixture:`),
      drawBars(mixture.map(({ t, w }) => ({ label: topicName(t, labels()), value: w, onClick: () => onTopic(t) })),
        { id: "infer-bars", format: pct }));
  };
  listeners.push(draw);
  const form = h("form", { id: "infer-form" }, text, h("br"), h("button", { type: "submit" }, "Infer"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      last = await api.post(`/v1/models/${enc(modelId)}/infer`, { texts: [text.value] });
      draw();
    } catch (error) {
      last = null;
      clear(result).append(h("p", { class: "error" }, error.message));
    }
  });
  return h("div", { class: "card", id: "infer-panel" }, h("h3", {}, "Infer"), form, result);
}

// The export zip, fetched with the key (a plain link could not send it) and saved.
export function exportButton(modelId) {
  const button = h("button", { type: "button", id: "export-button" }, "Export (zip)");
  button.addEventListener("click", async () => {
    const blob = await api.blob(`/v1/models/${enc(modelId)}/export?top_n=20`);
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: `model-${modelId}.zip` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });
  return button;
}
