// Compare two models of one corpus: topics matched one to one, side by side with their similarity.
import { api, enc } from "./api.js";
import { h, clear, topicName } from "./dom.js";
import { drawBars } from "./topicmap.js";

function topWords(topics) {
  return new Map(topics.topics.map((t) => [t.topic, t.words.map((w) => w.word).join(" ")]));
}

export async function renderCompare(view, first, second) {
  const models = (await api.get("/v1/models?limit=500")).models.filter((m) => m.status === "ready");
  const option = (m) => h("option", { value: m.id }, `${m.id.slice(0, 12)} · ${m.n_topics} topics · corpus ${m.corpus_id.slice(0, 8)}`);
  const pickA = h("select", { id: "compare-a" }, models.map(option));
  const pickB = h("select", { id: "compare-b" }, models.map(option));
  if (first) pickA.value = first;
  if (second) pickB.value = second;
  else if (models.length > 1) pickB.value = models.find((m) => m.id !== pickA.value)?.id ?? models[0].id;
  const result = h("div", { id: "compare-result" });
  const form = h("form", { id: "compare-form", class: "card" }, h("label", {}, "Model A ", pickA), " ",
    h("label", {}, "Model B ", pickB), " ", h("button", { type: "submit" }, "Compare"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const a = pickA.value;
    const b = pickB.value;
    history.replaceState(null, "", `#/compare/${enc(a)}/${enc(b)}`);
    clear(result).append(h("p", { class: "hint" }, "Matching…"));
    try {
      const [comparison, modelA, modelB, topicsA, topicsB] = await Promise.all([
        api.get(`/v1/models/${enc(a)}/compare/${enc(b)}`), api.get(`/v1/models/${enc(a)}`), api.get(`/v1/models/${enc(b)}`),
        api.get(`/v1/models/${enc(a)}/topics?top_n=6`), api.get(`/v1/models/${enc(b)}/topics?top_n=6`)]);
      const wordsA = topWords(topicsA);
      const wordsB = topWords(topicsB);
      const rows = comparison.matches.map((m) => h("tr", { class: "match" },
        h("td", {}, h("strong", {}, topicName(m.topic_a, modelA.topic_labels)), h("div", { class: "words" }, wordsA.get(m.topic_a))),
        h("td", {}, drawBars([{ label: "", value: m.similarity }], { width: 200, labelWidth: 0, max: 1, format: (v) => v.toFixed(3) })),
        h("td", {}, h("strong", {}, topicName(m.topic_b, modelB.topic_labels)), h("div", { class: "words" }, wordsB.get(m.topic_b)))));
      clear(result).append(h("table", { class: "list", id: "compare-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Model A topic"), h("th", {}, "similarity (Bhattacharyya)"), h("th", {}, "Model B topic"))),
        h("tbody", {}, rows)));
    } catch (error) {
      clear(result).append(h("p", { class: "error" }, error.message));
    }
  });
  clear(view).append(h("h2", {}, "Compare two models of one corpus"),
    h("p", { class: "hint" }, "Topics matched one to one (Hungarian algorithm) by the similarity of their word distributions."),
    form, result);
  if (first && second) form.requestSubmit();
}
