// Home: corpora and models lists, upload a file with text options, fit a model, live jobs.
import { api, enc } from "./api.js";
import { h, clear, fmt } from "./dom.js";
import { trackJob } from "./jobs.js";

function field(label, input) {
  return h("label", { class: "field" }, label, " ", input);
}

function uploadForm(jobs, refresh) {
  const file = h("input", { type: "file", name: "file", required: true, id: "upload-file" });
  const minDf = h("input", { type: "number", min: 1, value: "1", id: "upload-min-df" });
  const maxDf = h("input", { type: "number", min: 0.01, max: 1, step: 0.01, value: "1", id: "upload-max-df" });
  const stop = h("input", { type: "checkbox", id: "upload-stop-words", checked: true });
  const bigrams = h("input", { type: "checkbox", id: "upload-bigrams" });
  const name = h("input", { type: "text", maxlength: 255, id: "upload-name", placeholder: "optional" });
  const message = h("div", { class: "form-message" });
  const form = h("form", { id: "upload-form", class: "card" },
    h("h3", {}, "Upload a corpus"),
    h("p", { class: "hint" }, "JSON, JSONL, CSV/TSV, plain text (one document per line), zip or tar.gz."),
    field("File", file), field("Name", name), field("min_df", minDf), field("max_df", maxDf),
    field("English stop words", stop), field("Bigrams", bigrams),
    h("button", { type: "submit" }, "Upload"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "Uploading…";
    // max_df 1 (all documents) is the default; JSON would turn 1.0 into the count 1.
    const options = { min_df: Number(minDf.value), bigrams: bigrams.checked, stop_words: stop.checked ? "english" : null };
    if (Number(maxDf.value) < 1) options.max_df = Number(maxDf.value);
    const data = new FormData();
    data.append("file", file.files[0]);
    data.append("options", JSON.stringify(options));
    if (name.value.trim()) data.append("name", name.value.trim());
    try {
      const body = await api.upload("/v1/corpora", data);
      if (body.job) {
        message.textContent = "Ingesting in a worker…";
        await trackJob(jobs, body.job.id, { title: `Ingest ${body.corpus_id}` });
      }
      message.textContent = "Uploaded.";
      refresh();
    } catch (error) {
      message.textContent = `Upload failed: ${error.message}`;
    }
  });
  return form;
}

function fitForm(corpus, jobs, refresh) {
  const k = h("input", { type: "text", value: "auto", size: 5, class: "fit-k", "aria-label": "topics" });
  const alpha0 = h("input", { type: "text", value: "1.0", size: 5, class: "fit-alpha0", "aria-label": "alpha0" });
  const seed = h("input", { type: "number", value: "0", min: 0, class: "fit-seed", "aria-label": "seed" });
  const message = h("span", { class: "form-message" });
  const form = h("form", { class: "fit-form", "data-corpus": corpus.id },
    field("k", k), field("alpha0", alpha0), field("seed", seed), h("button", { type: "submit" }, "Fit"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const parse = (text) => (text.trim() === "auto" ? "auto" : Number(text));
    const request = { corpus_id: corpus.id, n_topics: parse(k.value), alpha0: parse(alpha0.value), seed: Number(seed.value) };
    if (Number.isNaN(request.n_topics) || Number.isNaN(request.alpha0)) {
      message.textContent = "k and alpha0 are numbers or 'auto'";
      return;
    }
    message.textContent = "";
    try {
      const body = await api.post("/v1/models", request);
      refresh();
      trackJob(jobs, body.job.id, {
        title: `Fit ${body.model_id}`,
        onDone: (job, panel) => {
          if (job.state === "succeeded") panel.append(" ", h("a", { href: `#/model/${enc(body.model_id)}`, class: "open-model" }, "Open model"));
          refresh();
        },
      });
    } catch (error) {
      message.textContent = error.message;
    }
  });
  return form;
}

function corporaTable(corpora, jobs, refresh) {
  if (!corpora.length) return h("p", { class: "hint" }, "No corpus yet: upload one.");
  return h("table", { class: "list", id: "corpora" },
    h("thead", {}, h("tr", {}, ["Corpus", "Name", "Documents", "Vocabulary", "Created", "Fit a model"].map((t) => h("th", {}, t)))),
    h("tbody", {}, corpora.map((c) => h("tr", { "data-corpus": c.id },
      h("td", { class: "mono" }, c.id.slice(0, 12)), h("td", {}, c.name || ""), h("td", {}, c.n_documents),
      h("td", {}, c.vocabulary_size), h("td", {}, new Date(c.created_at).toLocaleString()),
      h("td", {}, fitForm(c, jobs, refresh))))));
}

function modelsTable(models) {
  if (!models.length) return h("p", { class: "hint" }, "No model yet.");
  return h("table", { class: "list", id: "models" },
    h("thead", {}, h("tr", {}, ["Model", "Corpus", "Status", "k", "alpha0", "seed", "Created"].map((t) => h("th", {}, t)))),
    h("tbody", {}, models.map((m) => h("tr", { "data-model": m.id, "data-status": m.status },
      h("td", { class: "mono" }, m.status === "ready" ? h("a", { href: `#/model/${enc(m.id)}` }, m.id.slice(0, 12)) : m.id.slice(0, 12)),
      h("td", { class: "mono" }, m.corpus_id.slice(0, 12)),
      h("td", {}, m.status === "pending" ? h("a", { href: `#/job/${enc(m.job_id)}`, class: "job-link" }, "pending: progress") : m.status),
      h("td", {}, m.n_topics ?? m.params.n_topics),
      h("td", {}, fmt(m.alpha0 ?? NaN)), h("td", {}, m.seed), h("td", {}, new Date(m.created_at).toLocaleString())))));
}

// One job, live (linked from a pending model).
export async function renderJob(view, jobId) {
  const box = h("div", { id: "jobs" });
  clear(view).append(h("h2", {}, "Job"), box);
  await trackJob(box, jobId, {
    title: `Job ${jobId}`,
    onDone: (job, panel) => {
      if (job.state === "succeeded" && job.kind === "fit") {
        panel.append(" ", h("a", { href: `#/model/${enc(job.model_id)}`, class: "open-model" }, "Open model"));
      }
    },
  });
}

export async function renderHome(view) {
  const jobs = h("div", { id: "jobs" });
  const corporaBox = h("div");
  const modelsBox = h("div");
  const refresh = async () => {
    const [corpora, models] = await Promise.all([api.get("/v1/corpora?limit=100"), api.get("/v1/models?limit=100")]);
    clear(corporaBox).append(corporaTable(corpora.corpora, jobs, refresh));
    clear(modelsBox).append(modelsTable(models.models));
  };
  clear(view).append(
    h("section", {}, h("h2", {}, "Corpora"), uploadForm(jobs, refresh), jobs, corporaBox),
    h("section", {}, h("h2", {}, "Models"), modelsBox));
  await refresh();
}
