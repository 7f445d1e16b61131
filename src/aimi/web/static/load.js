// Live load per deployment (running / waiting requests, tokens per second), polled while the page is
// open and visible.
import { api } from "./common.js";

let previous = new Map();

async function poll() {
  if (document.hidden) return;
  let rows;
  try {
    rows = await api("GET", "/load");
  } catch {
    return;
  }
  const next = new Map();
  for (const row of rows) {
    next.set(row.deployment, row);
    const before = previous.get(row.deployment);
    const rate = before && row.at > before.at
      ? (row.generated_tokens - before.generated_tokens) / (row.at - before.at)
      : null;
    for (const box of document.querySelectorAll(`[data-deployment="${CSS.escape(row.deployment)}"]`)) {
      const running = box.querySelector(".load-running");
      const speed = box.querySelector(".load-rate");
      if (running) running.textContent = `${row.running} / ${row.waiting}`;
      if (speed && rate !== null) speed.textContent = rate.toFixed(1);
    }
  }
  previous = next;
}

poll();
setInterval(poll, 2000);
