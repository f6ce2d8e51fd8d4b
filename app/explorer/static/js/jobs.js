// A job's progress, live: one overall percent over all stages, the current stage, elapsed
// time, an estimate of the time left, the failure message, and a cancel button.
import { api, enc } from "./api.js";
import { h, s, clear, seconds } from "./dom.js";

// Rough share of a job's time per stage, in the order the stages run (unknown stages: 5).
const STAGE_WEIGHTS = {
  ingest: [["tokenize", 70], ["finalize", 20], ["write", 10]],
  fit: [["load", 3], ["moments", 10], ["whitening", 12], ["tensor", 15], ["decomposition", 12], ["recovery", 3],
    ["selection", 15], ["refinement", 25], ["doc_topic", 8], ["quality", 5], ["saving", 2]],
};

// Stages that only some jobs run ("auto" fits select k): counted once they show up.
const OPTIONAL_STAGES = ["selection"];

// Overall percent: finished stages count whole, the current one by its own percent, and
// the stages still to come (in the usual order) by their weight.
export function overallPercent(job) {
  if (job.state === "succeeded") return 100;
  const order = STAGE_WEIGHTS[job.kind] || [];
  const weight = (stage) => (order.find(([name]) => name === stage) || [stage, 5])[1];
  const finished = Object.keys(job.stage_timings || {}).filter((stage) => stage !== job.progress.stage);
  const current = job.progress.stage;
  const done = finished.reduce((sum, stage) => sum + weight(stage), 0)
    + (current ? weight(current) * job.progress.percent / 100 : 0);
  const position = order.findIndex(([name]) => name === current);
  const later = position < 0 ? [] : order.slice(position + 1).filter(([name]) => !finished.includes(name));
  const rest = later.filter(([name]) => !OPTIONAL_STAGES.includes(name)).reduce((sum, [, w]) => sum + w, 0);
  const total = done + (current ? weight(current) * (1 - job.progress.percent / 100) : 0) + rest;
  if (!current && !finished.length) return 0;
  return Math.min(99.9, total > 0 ? 100 * done / total : 0);
}

function elapsedSeconds(job) {
  const start = Date.parse(job.started_at || job.created_at);
  const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
  return Math.max(0, (end - start) / 1000);
}

// Track job `jobId` in `container` until it ends; resolves with the final job.
export function trackJob(container, jobId, { title, onDone } = {}) {
  const bar = s("rect", { x: 0, y: 0, height: 14, width: 0, class: "progress-fill" });
  const svg = s("svg", { class: "progress", viewBox: "0 0 300 14", width: 300, height: 14, role: "progressbar" },
    s("rect", { x: 0, y: 0, width: 300, height: 14, class: "progress-track" }), bar);
  const percentText = h("span", { class: "job-percent" }, "0%");
  const stage = h("span", { class: "job-stage" }, "queued");
  const times = h("span", { class: "job-times" });
  const message = h("div", { class: "job-message" });
  const cancel = h("button", { type: "button", class: "job-cancel" }, "Cancel");
  const panel = h("div", { class: "job", "data-job": jobId }, h("strong", {}, title || `Job ${jobId}`), " ",
    svg, " ", percentText, " ", stage, " ", times, " ", cancel, message);
  container.prepend(panel);
  let finished = false;
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      await api.post(`/v1/jobs/${enc(jobId)}/cancel`);
    } catch (error) {
      message.textContent = error.message;
    }
  });
  return new Promise((resolve) => {
    const poll = async () => {
      let job;
      try {
        job = await api.get(`/v1/jobs/${enc(jobId)}`);
      } catch (error) {
        message.textContent = error.message;
        setTimeout(poll, 2000);
        return;
      }
      const percent = overallPercent(job);
      bar.setAttribute("width", String(3 * percent));
      svg.setAttribute("aria-valuenow", percent.toFixed(0));
      percentText.textContent = `${percent.toFixed(percent >= 100 ? 0 : 1)}%`;
      stage.textContent = job.state === "running" ? `stage: ${job.progress.stage || "starting"}` : job.state;
      const elapsed = elapsedSeconds(job);
      const left = job.state === "running" && percent > 2 ? elapsed * (100 - percent) / percent : null;
      times.textContent = `elapsed ${seconds(elapsed)}` + (left !== null ? ` · about ${seconds(left)} left` : "");
      panel.dataset.state = job.state;
      if (["succeeded", "failed", "cancelled"].includes(job.state)) {
        finished = true;
        cancel.remove();
        if (job.state !== "succeeded") {
          message.textContent = `${job.state}: ${job.error_message || job.error_code || "no message"}`;
          panel.classList.add("failed");
        }
        if (onDone) onDone(job, panel);
        resolve(job);
        return;
      }
      setTimeout(poll, 400);
    };
    poll();
  }).finally(() => { if (!finished) clear(panel); });
}
