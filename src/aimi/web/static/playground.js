// The chat playground. It calls the deployment's real inference route, as an SDK would, with a
// short-lived token scoped to that deployment (minted for this session; kept in memory only), and
// streams the answer with fetch + ReadableStream. Model output is untrusted: it only ever becomes
// text (textContent), never markup.
import { api, copyText, toast } from "./common.js";

const $ = (id) => document.getElementById(id);
const root = $("playground");
const base = root.dataset.base;
const history = [];
let controller = null;
let token = null; // { value, deployment, expires } — never stored beyond this page

// -- helpers ------------------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function numberField(id) {
  const raw = $(id).value.trim();
  if (raw === "") return undefined;
  const value = Number(raw);
  return Number.isFinite(value) ? value : undefined;
}

function parseJsonField(id, what) {
  const raw = $(id).value.trim();
  if (!raw) return undefined;
  try {
    return JSON.parse(raw);
  } catch (exc) {
    throw new Error(`${what} is not valid JSON: ${exc.message}`);
  }
}

function deployment() {
  return $("deployment").value;
}

function endpoint() {
  return `${base}/deployments/${encodeURIComponent(deployment())}`;
}

async function scopedToken() {
  const name = deployment();
  if (!token || token.deployment !== name || token.expires - Date.now() < 60_000) {
    const minted = await api("POST", `/deployments/${encodeURIComponent(name)}/token`);
    token = { value: minted.token, deployment: name, expires: Date.now() + minted.expires_in * 1000 };
  }
  return token.value;
}

// The request body for the conversation so far (plus `extra`, the message being sent).
function requestBody(extra) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  const past = Math.max(0, numberField("past") ?? 10);
  messages.push(...(past ? history.slice(-past) : []));
  if (extra) messages.push(extra);
  const body = { messages };
  for (const id of ["max_tokens", "temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"]) {
    const value = numberField(id);
    if (value !== undefined) body[id] = value;
  }
  const stops = $("stop_sequences").value.split("\n").filter((s) => s.length > 0);
  if (stops.length > 4) throw new Error("At most 4 stop sequences.");
  if (stops.length) body.stop = stops;
  const format = $("response_format").value;
  if (format === "json_object") body.response_format = { type: "json_object" };
  if (format === "json_schema") {
    const schema = parseJsonField("json_schema", "The JSON schema");
    body.response_format = { type: "json_schema", json_schema: { name: "answer", schema, strict: true } };
  }
  const tools = parseJsonField("tools", "Tools");
  if (tools !== undefined) {
    if (!Array.isArray(tools)) throw new Error("Tools must be a JSON list.");
    body.tools = tools;
  }
  if ($("safe_prompt").checked) body.safe_prompt = true;
  if ($("stream").checked) body.stream = true;
  return body;
}

function describeFilter(results) {
  if (!results) return "";
  return Object.entries(results)
    .map(([category, verdict]) => {
      if (verdict.evaluated === false) return `${category}: not evaluated`;
      if ("detected" in verdict) return `${category}: ${verdict.detected ? "detected" : "not detected"}${verdict.filtered ? " (blocked)" : ""}`;
      if ("severity" in verdict) return `${category}: ${verdict.severity}${verdict.filtered ? " (filtered)" : ""}`;
      return `${category}: ${verdict.filtered ? "filtered" : "ok"}`;
    })
    .join(" · ");
}

// -- the conversation as shown ------------------------------------------------------------------

function addMessage(role, text) {
  const item = el("li", `msg ${role}`);
  item.append(el("div", "role", role === "user" ? "You" : role === "assistant" ? "Assistant" : role));
  const content = el("div", "content", text);
  item.append(content);
  const meta = el("div", "meta");
  item.append(meta);
  $("history").append(item);
  item.scrollIntoView({ block: "nearest" });
  return { item, content, meta };
}

function addNote(view, text, className = "note") {
  view.meta.append(el("p", className, text));
}

// -- sending ------------------------------------------------------------------------------------

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

async function send() {
  const text = $("prompt").value;
  if (!text.trim() || controller) return;
  const user = { role: "user", content: text };
  let body;
  try {
    body = requestBody(user);
  } catch (exc) {
    toast(exc.message);
    return;
  }
  $("prompt").value = "";
  const userView = addMessage("user", text);
  history.push(user);
  const answer = addMessage("assistant", "");
  answer.item.classList.add("pending");
  controller = new AbortController();
  setBusy(true);
  const headers = { "Content-Type": "application/json" };
  if (body.safe_prompt) headers["extra-parameters"] = "pass-through";
  const url = `${endpoint()}/chat/completions`;
  $("wire-request").textContent =
    `POST ${url}\n` +
    Object.entries({ ...headers, "api-key": "<a token scoped to this deployment, minted for this session>" })
      .map(([k, v]) => `${k}: ${v}`)
      .join("\n") +
    `\n\n${JSON.stringify(body, null, 2)}`;
  $("wire-events").textContent = "";
  $("wire-response").textContent = "";
  const started = performance.now();
  let firstToken = null;
  let textSoFar = "";
  let final = null;
  try {
    headers["api-key"] = await scopedToken();
    const response = await fetch(url, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal: controller.signal,
      credentials: "omit",
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({ error: { message: `HTTP ${response.status}` } }));
      $("wire-response").textContent = `HTTP ${response.status}\n${JSON.stringify(error, null, 2)}`;
      showError(answer, userView, response.status, error);
      history.pop();
      return;
    }
    if (!body.stream) {
      final = await response.json();
      $("wire-response").textContent = JSON.stringify(final, null, 2);
      const choice = final.choices[0];
      textSoFar = choice.message.content || "";
      answer.content.textContent = textSoFar;
      firstToken = performance.now();
      if (choice.message.tool_calls) showToolCalls(answer, choice.message.tool_calls);
      annotate(userView, answer, final.prompt_filter_results, choice.content_filter_results);
      finish(answer, choice.finish_reason, final.usage, started, firstToken, textSoFar, choice.message.tool_calls);
      return;
    }
    const folded = { id: null, object: "chat.completion", model: null, choices: [], usage: null };
    let toolCalls = null;
    let finishReason = null;
    let usage = null;
    let outputFilter = null;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let done = false;
    while (!done) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        $("wire-events").textContent += `${raw}\n\n`;
        const data = raw.startsWith("data: ") ? raw.slice(6) : raw;
        if (data === "[DONE]") {
          done = true;
          break;
        }
        const event = JSON.parse(data);
        if (event.error) {
          addNote(answer, `The stream ended with an error: ${event.error.message}`, "error");
          continue;
        }
        folded.id = event.id;
        folded.model = event.model;
        if (event.prompt_filter_results) folded.prompt_filter_results = event.prompt_filter_results;
        annotate(userView, null, event.prompt_filter_results, null);
        const choice = event.choices && event.choices[0];
        if (!choice) continue;
        const piece = choice.delta && choice.delta.content;
        if (piece) {
          if (firstToken === null) firstToken = performance.now();
          textSoFar += piece;
          answer.content.textContent = textSoFar;
        }
        if (choice.delta && choice.delta.tool_calls) toolCalls = choice.delta.tool_calls;
        if (choice.finish_reason) finishReason = choice.finish_reason;
        if (choice.content_filter_results) outputFilter = choice.content_filter_results;
        if (event.usage) usage = event.usage;
      }
    }
    folded.choices = [{
      index: 0,
      message: { role: "assistant", content: textSoFar, tool_calls: toolCalls },
      finish_reason: finishReason,
      content_filter_results: outputFilter || undefined,
    }];
    folded.usage = usage;
    $("wire-response").textContent =
      `// assembled from the events above\n${JSON.stringify(folded, null, 2)}`;
    if (toolCalls) showToolCalls(answer, toolCalls);
    annotate(userView, answer, null, outputFilter);
    finish(answer, finishReason, usage, started, firstToken, textSoFar, toolCalls);
  } catch (exc) {
    if (exc.name === "AbortError") {
      answer.item.classList.add("stopped");
      addNote(answer, "Stopped: the request was aborted, the server freed its slot and bills what was generated.");
      finish(answer, "stopped", null, started, firstToken, textSoFar, null);
    } else {
      addNote(answer, exc.message, "error");
      history.pop();
    }
  } finally {
    answer.item.classList.remove("pending");
    controller = null;
    setBusy(false);
    refreshCode();
  }
}

function showError(answer, userView, status, error) {
  const e = error.error || {};
  answer.item.classList.add("refused");
  answer.content.textContent = "";
  addNote(answer, `${status} ${e.code || ""}: ${e.message || "the request failed"}`, "error blocked");
  if (e.code === "content_filter" && e.innererror) {
    addNote(userView, `Prompt blocked: ${describeFilter(e.innererror.content_filter_result)}`, "filter");
  }
}

function showToolCalls(answer, calls) {
  answer.content.after(el("pre", "tool-calls", JSON.stringify(calls, null, 2)));
}

function annotate(userView, answer, promptResults, outputResults) {
  if (promptResults && userView && !userView.item.dataset.annotated) {
    userView.item.dataset.annotated = "1";
    const results = promptResults[0] && promptResults[0].content_filter_results;
    addNote(userView, `Content filter (prompt): ${describeFilter(results)}`, "filter");
  }
  if (outputResults && answer) {
    addNote(answer, `Content filter (answer): ${describeFilter(outputResults)}`, "filter");
  }
}

function finish(answer, reason, usage, started, firstToken, text, toolCalls) {
  const ended = performance.now();
  if (reason === "content_filter") {
    answer.content.append(el("mark", "cut", " ✂ cut here by content safety"));
  }
  const parts = [`finish_reason: ${reason ?? "-"}`];
  if (usage) parts.push(`tokens: ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion`);
  if (firstToken !== null) parts.push(`time to first token: ${Math.round(firstToken - started)} ms`);
  if (usage && firstToken !== null && ended > firstToken && usage.completion_tokens > 1) {
    parts.push(`${((usage.completion_tokens - 1) / ((ended - firstToken) / 1000)).toFixed(1)} tokens/s`);
  }
  const stats = el("p", "stats", parts.join(" · "));
  answer.meta.prepend(stats);
  answer.item.dataset.finishReason = reason ?? "";
  const message = { role: "assistant", content: text };
  if (toolCalls) message.tool_calls = toolCalls;
  history.push(message);
}

// -- view code ----------------------------------------------------------------------------------

async function refreshCode() {
  if (!$("code-panel").open) return;
  let body;
  try {
    const pending = $("prompt").value.trim();
    body = requestBody(pending ? { role: "user", content: pending } : undefined);
  } catch (exc) {
    toast(exc.message);
    return;
  }
  if (!body.messages.some((m) => m.role === "user")) body.messages.push({ role: "user", content: "Hello!" });
  try {
    const programs = await api("POST", "/code", { deployment: deployment(), body });
    for (const [lang, text] of Object.entries(programs)) {
      const pre = $(`code-${lang}`);
      if (pre) pre.textContent = text;
    }
  } catch (exc) {
    toast(exc.message);
  }
}

const tabs = [...document.querySelectorAll("#code-tabs [role=tab]")];
function selectTab(tab) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
}
for (const [i, tab] of tabs.entries()) {
  tab.tabIndex = i === 0 ? 0 : -1;
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = tabs[(i + step + tabs.length) % tabs.length];
    selectTab(next);
    next.focus();
  });
}
$("copy-code").addEventListener("click", () => {
  const shown = document.querySelector("#code-panel pre.code:not([hidden])");
  if (shown) copyText(shown.textContent);
});
$("code-panel").addEventListener("toggle", refreshCode);

// -- controls -----------------------------------------------------------------------------------

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
$("stop").addEventListener("click", () => {
  if (controller) controller.abort();
});
$("clear").addEventListener("click", () => {
  history.length = 0;
  $("history").replaceChildren();
  refreshCode();
});
$("deployment").addEventListener("change", () => {
  const url = new URL(window.location.href);
  url.searchParams.set("deployment", deployment());
  window.history.replaceState(null, "", url);
  refreshCode();
});
$("response_format").addEventListener("change", () => {
  $("schema-label").hidden = $("response_format").value !== "json_schema";
});
for (const id of ["system", "past", "max_tokens", "temperature", "top_p", "seed", "presence_penalty",
  "frequency_penalty", "stop_sequences", "response_format", "json_schema", "tools", "safe_prompt", "stream"]) {
  $(id).addEventListener("change", refreshCode);
}
