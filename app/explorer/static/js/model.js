// A model: the intertopic map, the selected topic's terms by relevance (slider), its
// alpha, share and coherence, its label, its top documents; then word lookup and
// inference (model-tools.js).
import { api, enc } from "./api.js";
import { h, clear, fmt, pct, topicName } from "./dom.js";
import { drawMap, drawBars, drawMixture } from "./topicmap.js";
import { wordPanel, inferPanel, exportButton } from "./model-tools.js";

const termsPath = (modelId, topic, lambda) => `/v1/models/${enc(modelId)}/topics/${topic}/terms?lambda=${lambda}&top_n=20`;

export async function renderModel(view, modelId, selected) {
  // The first topic's terms are asked for with the map: the selected one, else topic 0
  // (topics are sorted by alpha).
  const firstTopic = selected ?? 0;
  const firstTerms = api.get(termsPath(modelId, firstTopic, 0.6)).catch(() => null);
  const [model, map] = await Promise.all([api.get(`/v1/models/${enc(modelId)}`), api.get(`/v1/models/${enc(modelId)}/map`)]);
  const state = { labels: { ...model.topic_labels }, topic: null, lambda: 0.6, requests: 0, prefetched: firstTerms };
  const points = new Map(map.topics.map((p) => [p.topic, p]));
  const topicBox = h("div", { id: "topic-panel", class: "card" });
  const docsBox = h("div", { id: "topic-documents", class: "card" });
  const listeners = [];
  const name = (t) => topicName(t, state.labels);
  const mapView = drawMap(map.topics, state.labels, { onSelect: (t) => select(t) });
  const slider = h("input", { type: "range", min: 0, max: 1, step: 0.05, value: String(state.lambda), id: "relevance",
    "aria-label": "relevance lambda" });
  const lambdaText = h("output", { id: "relevance-value" }, state.lambda.toFixed(2));
  const barsBox = h("div", { id: "terms-box" });
  let sliderTimer = null;
  slider.addEventListener("input", () => {
    state.lambda = Number(slider.value);
    lambdaText.textContent = state.lambda.toFixed(2);
    clearTimeout(sliderTimer);
    sliderTimer = setTimeout(() => drawTerms(), 60);
  });

  async function drawTerms() {
    const topic = state.topic;
    const ticket = ++state.requests;
    const prefetched = state.prefetched && topic === firstTopic && state.lambda === 0.6 ? await state.prefetched : null;
    state.prefetched = null;
    const body = prefetched || await api.get(termsPath(modelId, topic, state.lambda));
    if (ticket !== state.requests) return;  // a newer request is on its way
    const rows = body.terms.map((t) => ({ label: t.word, value: t.weight }));
    clear(barsBox).append(drawBars(rows, { id: "term-bars", background: body.terms.map((t) => t.overall) }));
    barsBox.dataset.lambda = String(state.lambda);
  }

  function labelForm(topic) {
    const input = h("input", { type: "text", id: "label-input", maxlength: 120, value: state.labels[String(topic)] || "",
      placeholder: "name this topic" });
    const message = h("span", { class: "form-message", id: "label-message" });
    const form = h("form", { id: "label-form" }, input, " ", h("button", { type: "submit" }, "Save label"), " ", message);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const body = await api.put(`/v1/models/${enc(modelId)}/topics/${topic}/label`, { label: input.value });
        state.labels = body.topic_labels;
        mapView.relabel(state.labels);
        message.textContent = "Saved.";
        select(topic);
        for (const listener of listeners) listener();
      } catch (error) {
        message.textContent = error.message;
      }
    });
    return form;
  }

  async function drawDocuments(topic) {
    clear(docsBox).append(h("h3", {}, `Documents that weigh most on ${name(topic)}`), h("p", { class: "hint" }, "Loading…"));
    const body = await api.get(`/v1/models/${enc(modelId)}/topics/${topic}/documents?limit=10`);
    if (state.topic !== topic) return;
    const items = body.documents.map((d) => h("li", { class: "document", "data-doc": d.doc_id },
      h("div", {}, h("span", { class: "mono doc-id" }, d.doc_id), " ", h("span", { class: "doc-weight" }, pct(d.weight)),
        " ", drawMixture(d.topics, state.labels)),
      h("div", { class: "snippet" }, d.snippet === null ? "(no text kept: bag-of-words corpus)" : d.snippet)));
    clear(docsBox).append(h("h3", {}, `Documents that weigh most on ${name(topic)}`), h("ol", { id: "document-list" }, items));
  }

  function select(topic) {
    state.topic = topic;
    mapView.select(topic);
    const p = points.get(topic);
    clear(topicBox).append(
      h("h3", { id: "topic-title" }, name(topic)),
      h("p", { class: "topic-stats" }, `alpha ${fmt(p.alpha)} · share ${pct(p.share)} · coherence (NPMI) ${fmt(p.coherence)}`),
      labelForm(topic),
      h("div", { class: "slider" }, h("label", { for: "relevance" }, "relevance λ"), " ", slider, " ", lambdaText,
        h("span", { class: "hint" }, " 1: most probable words · 0: most distinctive words")),
      barsBox);
    drawTerms();
    drawDocuments(topic);
    if (location.hash !== `#/model/${modelId}/topic/${topic}`) history.replaceState(null, "", `#/model/${modelId}/topic/${topic}`);
  }

  const names = () => state.labels;
  clear(view).append(
    h("h2", {}, "Model ", h("span", { class: "mono" }, modelId), " ", exportButton(modelId)),
    h("p", { class: "hint" }, `${map.topics.length} topics · corpus ${model.corpus_id} · alpha0 ${fmt(model.alpha0)} · seed ${model.seed}`),
    h("div", { class: "model-grid" },
      h("div", { class: "card" }, h("h3", {}, "Intertopic distance map"),
        h("p", { class: "hint" }, "Jensen-Shannon distances placed by classical MDS; area = share of tokens. Click a topic."),
        mapView.element),
      topicBox),
    docsBox,
    h("div", { class: "model-grid" }, wordPanel(modelId, names, (t) => select(t), listeners),
      inferPanel(modelId, names, (t) => select(t), listeners)));
  select(points.has(firstTopic) ? firstTopic : map.topics[0].topic);
}
