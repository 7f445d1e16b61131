// A deployment's page: regenerate a key (confirmed; the new key shown once), edit the rate limits in
// place, the content-safety policy as a form, delete (confirmed by typing the name).
import { api, toast } from "./common.js";

const root = document.getElementById("deployment");
const name = root.dataset.name;
const path = `/deployments/${encodeURIComponent(name)}`;
const label = (which) => (which === "primary" ? "Key 1" : "Key 2");

// -- keys ---------------------------------------------------------------------------------------
const confirmDialog = document.getElementById("regenerate-dialog");
const keyDialog = document.getElementById("newkey-dialog");
let pending = null;

for (const button of document.querySelectorAll("button.regenerate")) {
  button.addEventListener("click", () => {
    pending = button.dataset.which;
    for (const span of confirmDialog.querySelectorAll(".which")) span.textContent = label(pending);
    confirmDialog.returnValue = "";
    confirmDialog.showModal();
  });
}

confirmDialog.addEventListener("close", async () => {
  if (confirmDialog.returnValue !== "confirm" || !pending) return;
  const which = pending;
  pending = null;
  try {
    const issued = await api("POST", `${path}/keys/${which}/regenerate`);
    for (const span of keyDialog.querySelectorAll(".which")) span.textContent = label(which);
    document.getElementById("new-key").textContent = issued.key;
    const row = document.querySelector(`#keys tr[data-which="${which}"]`);
    if (row) {
      row.querySelector(".hint").textContent = `••••••••${issued.key.slice(-4)}`;
      row.cells[2].textContent = "just now";
    }
    keyDialog.showModal();
  } catch (exc) {
    toast(exc.message);
  }
});
keyDialog.addEventListener("close", () => {
  document.getElementById("new-key").textContent = "";
});

// -- rate limits --------------------------------------------------------------------------------
const quotas = document.getElementById("quotas");
const quotasStatus = document.getElementById("quotas-status");
quotas.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {
    requests_per_minute: Number(document.getElementById("rpm").value),
    tokens_per_minute: Number(document.getElementById("tpm").value),
  };
  try {
    const updated = await api("PATCH", path, body);
    quotasStatus.textContent =
      `Saved: ${updated.requests_per_minute} requests and ${updated.tokens_per_minute} tokens per minute.`;
    quotasStatus.className = "check good";
  } catch (exc) {
    quotasStatus.textContent = exc.message;
    quotasStatus.className = "check bad";
  }
});

// -- content safety -----------------------------------------------------------------------------
const safety = document.getElementById("safety");
const safetyStatus = document.getElementById("safety-status");
const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);

document.getElementById("add-blocklist").addEventListener("click", (event) => {
  const copy = document.getElementById("blocklist-template").content.cloneNode(true);
  event.target.before(copy);
});
safety.addEventListener("click", (event) => {
  if (event.target.matches("button.remove-blocklist")) event.target.closest(".blocklist").remove();
});

safety.addEventListener("submit", async (event) => {
  event.preventDefault();
  const levels = (direction) => {
    const out = {};
    for (const select of safety.querySelectorAll(`select[name^="${direction}."]`)) {
      out[select.name.slice(direction.length + 1)] = select.value || null;
    }
    return out;
  };
  const blocklists = [...safety.querySelectorAll(".blocklist")]
    .map((box) => ({
      name: box.querySelector('[name="blocklist-name"]').value.trim(),
      terms: lines(box.querySelector('[name="blocklist-terms"]').value),
      patterns: lines(box.querySelector('[name="blocklist-patterns"]').value),
    }))
    .filter((b) => b.name || b.terms.length || b.patterns.length);
  const body = {
    enabled: safety.elements.enabled.checked,
    input: levels("input"),
    output: levels("output"),
    block_jailbreak: safety.elements.block_jailbreak.checked,
    fail_closed: safety.elements.fail_closed.checked,
    blocklists,
  };
  const judge = safety.elements.judge.value.trim();
  if (judge) body.judge = judge;
  try {
    await api("PUT", `${path}/safety`, body);
    safetyStatus.textContent = body.enabled ? "Saved: content safety is on." : "Saved: content safety is off.";
    safetyStatus.className = "check good";
  } catch (exc) {
    safetyStatus.textContent = exc.message;
    safetyStatus.className = "check bad";
  }
});

// -- delete -------------------------------------------------------------------------------------
const deleteDialog = document.getElementById("delete-dialog");
const typed = document.getElementById("delete-confirm-name");
const deleteButton = document.getElementById("delete-confirm");
document.getElementById("delete").addEventListener("click", () => {
  typed.value = "";
  deleteButton.disabled = true;
  deleteDialog.showModal();
  typed.focus();
});
typed.addEventListener("input", () => {
  deleteButton.disabled = typed.value !== name;
});
deleteButton.addEventListener("click", async () => {
  try {
    await api("DELETE", path);
    window.location.assign("/portal/deployments");
  } catch (exc) {
    const error = document.getElementById("delete-error");
    error.textContent = exc.message;
    error.hidden = false;
  }
});
