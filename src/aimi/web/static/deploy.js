// Deploy a catalog model: live name check (the API's own rule and message), explicit terms, then the
// endpoint and both keys, shown once.
import { api, toast } from "./common.js";

const form = document.getElementById("deploy");
const nameInput = document.getElementById("name");
const check = document.getElementById("name-check");
const preview = document.getElementById("endpoint-preview");
const accept = document.getElementById("accept");
const button = document.getElementById("deploy-button");
const error = document.getElementById("deploy-error");
let nameOk = false;
let checking = 0;

function update() {
  button.disabled = !(accept.checked && nameOk);
}

async function checkName() {
  const name = nameInput.value;
  const mine = ++checking;
  preview.textContent = `${form.dataset.base}/deployments/${name}`;
  if (!name) {
    nameOk = false;
    check.textContent = "A deployment needs a name.";
    check.className = "check bad";
    update();
    return;
  }
  try {
    const result = await api("GET", `/names/${encodeURIComponent(name)}`);
    if (mine !== checking) return;
    nameOk = result.ok;
    check.textContent = result.ok ? "Available" : result.message;
    check.className = result.ok ? "check good" : "check bad";
  } catch (exc) {
    if (mine !== checking) return;
    nameOk = false;
    check.textContent = exc.message;
    check.className = "check bad";
  }
  update();
}

let timer = null;
nameInput.addEventListener("input", () => {
  clearTimeout(timer);
  timer = setTimeout(checkName, 150);
});
accept.addEventListener("change", update);
checkName();

function number(id) {
  const value = document.getElementById(id).value;
  return value === "" ? null : Number(value);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  button.disabled = true;
  const body = {
    project: document.getElementById("project").value,
    model: form.dataset.model,
    name: nameInput.value,
    requests_per_minute: number("rpm"),
    tokens_per_minute: number("tpm"),
    accept_terms: accept.checked,
  };
  const source = document.getElementById("source");
  if (source && source.value) body.source = source.value;
  try {
    const created = await api("POST", "/deployments", body);
    if (document.getElementById("safety").value === "off") {
      await api("PUT", `/deployments/${encodeURIComponent(created.deployment.name)}/safety`, { enabled: false });
    }
    showCreated(created);
  } catch (exc) {
    error.textContent = exc.message;
    error.hidden = false;
    update();
  }
});

function showCreated(created) {
  const keys = Object.fromEntries(created.keys.map((k) => [k.which, k.key]));
  const endpoint = created.deployment.endpoint;
  document.getElementById("created-endpoint").textContent = endpoint;
  document.getElementById("created-key1").textContent = keys.primary;
  document.getElementById("created-key2").textContent = keys.secondary;
  form.hidden = true;
  const panel = document.getElementById("created");
  panel.hidden = false;
  document.getElementById("created-title").focus();
  const go = document.getElementById("go-deployment");
  const target = `/portal/deployments/${encodeURIComponent(created.deployment.name)}`;
  document.getElementById("saved").addEventListener("change", (event) => {
    if (event.target.checked) {
      go.href = target;
      go.removeAttribute("aria-disabled");
    } else {
      go.href = "#";
      go.setAttribute("aria-disabled", "true");
    }
  });
  go.addEventListener("click", (event) => {
    if (go.getAttribute("aria-disabled") === "true") {
      event.preventDefault();
      toast("Tick “I have saved these keys” first");
    }
  });
  document.getElementById("download-env").addEventListener("click", () => {
    const text = `AZURE_INFERENCE_ENDPOINT=${endpoint}\nAZURE_INFERENCE_CREDENTIAL=${keys.primary}\n` +
      `# the other key: ${keys.secondary}\n`;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    link.download = `${created.deployment.name}.env`;
    document.body.append(link);
    link.click();
    link.remove();
  });
}
