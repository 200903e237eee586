// The chat page's behaviour: plain browser JavaScript, served from this origin only (the page's
// Content-Security-Policy allows no other script). It talks to POST /chat with "stream": true
// and reads the Server-Sent Events from fetch(), because EventSource cannot send a POST body.
// Loaded as a module: strict, deferred, and nothing leaks into the global scope.

import { renderMarkdown } from "/ui/markdown.js";

const STORAGE_KEY = "ion-mentoring.conversation.v1";
const MENTOR_KEY = "ion-mentoring.mentor.v1";

const $ = (id) => document.getElementById(id);
const ui = {
  conversation: $("conversation"),
  empty: $("empty"),
  form: $("ask"),
  question: $("question"),
  send: $("send"),
  stop: $("stop"),
  mentor: $("mentor"),
  reset: $("new-conversation"),
  status: $("status"),
};

/** Completed exchanges, oldest first: {question, answer, meta, chosen, note}. Only these
 *  are sent back as history; a stopped or failed answer is shown but never sent. */
let turns = [];
/** The answer being streamed: {controller}. */
let active = null;

// ---------------------------------------------------------------- storage

function loadState() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
    if (saved && Array.isArray(saved.turns)) {
      turns = saved.turns.filter(
        (t) => t && typeof t.question === "string" && typeof t.answer === "string",
      );
    }
    const mentor = localStorage.getItem(MENTOR_KEY);
    if (mentor && [...ui.mentor.options].some((o) => o.value === mentor)) {
      ui.mentor.value = mentor;
    }
  } catch {
    turns = []; // Storage disabled or corrupt: start afresh.
  }
}

function saveState() {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ turns }));
    localStorage.setItem(MENTOR_KEY, ui.mentor.value);
  } catch {
    // Private mode or full storage: the conversation still works for this page's life.
  }
}

function historyToSend() {
  return turns.flatMap((t) => [
    { role: "user", content: t.question },
    { role: "assistant", content: t.answer },
  ]);
}

// ---------------------------------------------------------------- rendering

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function announce(text) {
  ui.status.textContent = "";
  // A fresh text node is announced even when the words repeat.
  window.setTimeout(() => { ui.status.textContent = text; }, 50);
}

function scrollToEnd() {
  const main = ui.conversation.parentElement;
  main.scrollTop = main.scrollHeight;
}

function addUserMessage(question) {
  ui.empty.hidden = true;
  const article = el("article", "message user");
  article.setAttribute("aria-label", "You asked");
  article.append(el("p", "text", question));
  ui.conversation.append(article);
  scrollToEnd();
  return article;
}

/** An answer bubble; `fill` functions update its parts as events arrive. */
function addAnswer() {
  const article = el("article", "message assistant");
  article.setAttribute("aria-label", "Mentor's answer");
  const who = el("p", "who", "Finding the right mentor…");
  const text = el("div", "text markdown");
  article.append(who, text);
  ui.conversation.append(article);
  scrollToEnd();
  return { article, who, text, markdown: [], frame: 0, pending: "" };
}

/** Shows `answer` (Markdown) in the bubble at the next frame: deltas arriving faster than the
 *  screen refreshes cost one render, and only the blocks that changed are rebuilt. */
function paintAnswer(bubble, answer) {
  bubble.pending = answer;
  if (bubble.frame) return;
  bubble.frame = window.requestAnimationFrame(() => {
    bubble.frame = 0;
    bubble.markdown = renderMarkdown(bubble.text, bubble.pending, bubble.markdown);
    scrollToEnd();
  });
}

/** Shows `answer` in the bubble now (the end of a stream, or a saved answer). */
function paintAnswerNow(bubble, answer) {
  if (bubble.frame) window.cancelAnimationFrame(bubble.frame);
  bubble.frame = 0;
  bubble.markdown = renderMarkdown(bubble.text, answer, bubble.markdown);
}

function describeRouting(meta, chosen) {
  const persona = meta.persona_used || "The mentor";
  const key = meta.resonance_key || "";
  const [tone, pace, intent] = key.split("-");
  const reading = tone && pace && intent
    ? `Your message reads as tone “${tone}”, pace “${pace}”, intent “${intent}” (resonance key ${key}).`
    : "";
  if (chosen) return `You chose ${persona}. ${reading}`.trim();
  const routing = meta.metadata && meta.metadata.routing;
  const confidence = typeof meta.confidence === "number"
    ? ` Match ${Math.round(meta.confidence * 100)}%.` : "";
  const reasoning = routing && routing.reasoning ? ` ${routing.reasoning}.` : "";
  return `Picked automatically. ${reading}${confidence}${reasoning}`;
}

function showMeta(bubble, meta, chosen) {
  const persona = meta.persona_used || "A mentor";
  bubble.who.replaceChildren(
    el("strong", "persona", persona),
    document.createTextNode(chosen ? " (your choice)" : ""),
    document.createTextNode(meta.resonance_key ? ` · ${meta.resonance_key}` : ""),
  );
  const why = el("details", "why");
  why.append(el("summary", "", `Why ${persona}?`), el("p", "", describeRouting(meta, chosen)));
  bubble.text.after(why);
}

function addNote(bubble, text) {
  bubble.article.append(el("p", "note", text));
}

function addCopyButton(bubble, answer) {
  const tools = el("div", "tools");
  const copy = el("button", "small", "Copy");
  copy.type = "button";
  copy.append(el("span", "visually-hidden", " answer"));
  const done = el("span", "copied");
  done.hidden = true;
  copy.addEventListener("click", async () => {
    const ok = await copyText(answer);
    done.textContent = ok ? "Copied" : "Could not copy";
    done.hidden = false;
    announce(ok ? "Answer copied to the clipboard" : "Could not copy the answer");
    window.setTimeout(() => { done.hidden = true; }, 2000);
  });
  tools.append(copy, done);
  bubble.article.append(tools);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // The Clipboard API needs a secure context (https or localhost): fall back to a selection.
    const area = el("textarea", "visually-hidden");
    area.value = text;
    area.setAttribute("aria-hidden", "true");
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

function renderSaved() {
  for (const turn of turns) {
    addUserMessage(turn.question);
    const bubble = addAnswer();
    paintAnswerNow(bubble, turn.answer);
    if (turn.meta) showMeta(bubble, turn.meta, turn.chosen);
    if (turn.note) addNote(bubble, turn.note);
    addCopyButton(bubble, turn.answer);
  }
}

// ---------------------------------------------------------------- problems

/** What went wrong, in words, from an error response (contract: {error, status_code, code}). */
function describeFailure(status, body, retryAfter) {
  const code = body && body.code;
  const said = body && typeof body.error === "string" ? body.error : "";
  const ref = `HTTP ${status}${code ? `, ${code}` : ""}`;
  if (status === 429 || code === "overloaded") {
    return {
      title: status === 429
        ? "The AI service is rate limiting requests right now."
        : "The service is busy right now.",
      detail: `${said} (${ref})`.trim(),
      wait: retryAfter,
      retry: true,
    };
  }
  if (code === "content_blocked") {
    const what = body.stage === "prompt" ? "question" : "answer";
    const reason = body.block_reason ? ` (reason: ${body.block_reason})` : "";
    return {
      title: `The content filters blocked this ${what}${reason}. No answer was given.`,
      detail: "Try asking in other words: your question is back in the box below.",
      restore: true,
    };
  }
  if (status === 422) {
    const issue = body && Array.isArray(body.detail) ? body.detail[0] : null;
    const where = issue && Array.isArray(issue.loc) ? issue.loc.join(".") : "";
    const tooMuchHistory = where.includes("history");
    return {
      title: `The question was not accepted: ${issue ? issue.msg : "invalid request"}.`,
      detail: tooMuchHistory
        ? "The conversation is too long to send again: start a new conversation to go on."
        : (where ? `(${where})` : ""),
      restore: !tooMuchHistory,
    };
  }
  if (status === 413) {
    return { title: "The question is too long to send.", detail: `(${ref})`, restore: true };
  }
  if (status >= 500 || status === 408) {
    return {
      title: "The answer could not be produced.",
      detail: `${said || "The service failed."} (${ref})`,
      wait: retryAfter,
      retry: true,
    };
  }
  return { title: "The request failed.", detail: `${said} (${ref})`.trim(), retry: true };
}

/** Shows a problem in the answer bubble, with a retry button where retrying can help. */
function showProblem(bubble, problem, question) {
  if (bubble.frame) paintAnswerNow(bubble, bubble.pending); // what arrived is on screen first
  const box = el("div", "problem");
  box.append(el("p", "problem-title", problem.title));
  if (problem.detail) box.append(el("p", "problem-detail", problem.detail));
  bubble.article.append(box);
  bubble.article.classList.add("failed");
  if (!bubble.text.textContent) bubble.text.hidden = true;
  if (bubble.who.textContent.startsWith("Finding")) bubble.who.textContent = "No answer";

  if (problem.restore && !ui.question.value) {
    ui.question.value = question;
  }
  if (!problem.retry) return;

  const tools = el("div", "tools");
  const retry = el("button", "small primary", "Retry");
  retry.type = "button";
  tools.append(retry);
  box.append(tools);
  let timer = 0;
  retry.addEventListener("click", () => {
    if (active) return;
    window.clearInterval(timer);
    bubble.article.remove();
    ask(question, false);
  });

  const wait = problem.wait;
  if (wait > 0) {
    const waitLine = el("p", "wait");
    const seconds = el("span", "seconds", String(wait));
    // Updated every second: kept out of the live announcements.
    seconds.setAttribute("aria-live", "off");
    waitLine.append(
      document.createTextNode("Please wait "),
      seconds,
      document.createTextNode(" s before retrying (the service asked for this pause)."),
    );
    box.insertBefore(waitLine, tools);
    retry.disabled = true;
    let left = wait;
    timer = window.setInterval(() => {
      left -= 1;
      seconds.textContent = String(Math.max(left, 0));
      if (left <= 0) {
        window.clearInterval(timer);
        retry.disabled = false;
        waitLine.textContent = "You can retry now.";
      }
    }, 1000);
  }
}

/** `Retry-After` as seconds: a number of seconds or an HTTP date. */
function retryAfterSeconds(value) {
  if (!value) return 0;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
  const date = Date.parse(value);
  return Number.isNaN(date) ? 0 : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

// ---------------------------------------------------------------- streaming

/**
 * Yields {event, data} records from a text/event-stream body. Hand-written because EventSource
 * only does GET; it follows the WHATWG parsing rules for the `event` and `data` fields, with
 * lines ended by LF or CRLF (a lone CR, which this service never sends, is not a line end).
 */
async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      let line = buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (data.length) yield { event: event || "message", data: data.join("\n") };
        event = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let content = colon < 0 ? "" : line.slice(colon + 1);
      if (content.startsWith(" ")) content = content.slice(1);
      if (field === "event") event = content;
      else if (field === "data") data.push(content);
    }
  }
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.hidden = !busy;
}

/** Asks `question` with the conversation so far, streaming the answer into a new bubble. */
async function ask(question, showQuestion = true) {
  if (showQuestion) addUserMessage(question);
  const bubble = addAnswer();
  bubble.article.classList.add("streaming");
  const chosen = ui.mentor.value !== "auto";
  const request = { message: question, history: historyToSend(), stream: true };
  if (chosen) request.persona = ui.mentor.value;

  const controller = new AbortController();
  active = { controller };
  setBusy(true);
  let meta = null;
  let answer = "";
  let finished = false;
  try {
    const response = await fetch("/chat", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify(request),
      signal: controller.signal,
    });
    const type = response.headers.get("content-type") || "";
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch { body = null; }
      const wait = retryAfterSeconds(response.headers.get("retry-after"));
      showProblem(bubble, describeFailure(response.status, body, wait), question);
      announce("The question got no answer: see the message in the conversation.");
      return;
    }
    if (!type.startsWith("text/event-stream")) {
      throw new Error(`expected an event stream, got ${type || "no content type"}`);
    }
    for await (const { event, data } of serverSentEvents(response.body)) {
      const payload = JSON.parse(data);
      if (event === "meta") {
        meta = payload;
        showMeta(bubble, meta, chosen);
      } else if (event === "delta") {
        answer += payload.text || "";
        paintAnswer(bubble, answer);
      } else if (event === "done") {
        finished = true;
        bubble.note = doneNote(payload);
        break;
      } else if (event === "error") {
        const code = payload.code ? `, ${payload.code}` : "";
        showProblem(bubble, {
          title: answer ? "The answer broke off before it was complete." : "The answer failed.",
          detail: `${payload.error || "The AI service failed."} (HTTP ${payload.status_code}${code})`,
          retry: true,
        }, question);
        announce("The answer broke off: see the message in the conversation.");
        break;
      }
    }
    if (!finished && !bubble.article.classList.contains("failed")) {
      showProblem(bubble, {
        title: "The answer stopped before it was complete.",
        detail: "The connection closed without the end of the answer.",
        retry: true,
      }, question);
    }
  } catch (error) {
    if (error.name === "AbortError") {
      bubble.article.classList.add("stopped");
      if (!answer) bubble.text.hidden = true;
      addNote(bubble, answer
        ? "Stopped. This partial answer is not sent with your next question."
        : "Stopped before any answer arrived.");
      if (bubble.who.textContent.startsWith("Finding")) bubble.who.textContent = "Stopped";
      announce("Answer stopped");
    } else if (error instanceof TypeError) {
      // fetch() and the body reader fail with a TypeError when the network does.
      showProblem(bubble, {
        title: answer
          ? "The connection was lost before the answer was complete."
          : "The service could not be reached.",
        detail: `Check your connection and retry. (${error.message})`,
        retry: true,
      }, question);
    } else {
      showProblem(bubble, {
        title: "The service's reply could not be read.",
        detail: `(${error.message})`,
        retry: true,
      }, question);
    }
  } finally {
    paintAnswerNow(bubble, answer);
    bubble.article.classList.remove("streaming");
    active = null;
    setBusy(false);
  }
  if (finished && answer) {
    if (bubble.note) addNote(bubble, bubble.note);
    addCopyButton(bubble, answer);
    turns.push({ question, answer, meta: slimMeta(meta), chosen, note: bubble.note || "" });
    saveState();
    announce("Answer complete");
  } else if (finished) {
    showProblem(bubble, { title: "The mentor gave an empty answer.", retry: true }, question);
  }
}

/** What the `done` event says beyond a plain, complete answer. */
function doneNote(done) {
  const notes = [];
  if (done.truncated) {
    notes.push(`The answer was cut short at the length limit (finish reason ${done.finish_reason}).`);
  } else if (done.finish_reason && done.finish_reason !== "STOP") {
    notes.push(`The answer ended early (finish reason ${done.finish_reason}).`);
  }
  const attempts = done.metadata && done.metadata.attempts;
  if (attempts > 1) notes.push(`Vertex AI needed ${attempts} attempts for it.`);
  return notes.join(" ");
}

/** The part of a meta event worth keeping across reloads. */
function slimMeta(meta) {
  if (!meta) return null;
  const routing = meta.metadata && meta.metadata.routing;
  return {
    persona_used: meta.persona_used,
    resonance_key: meta.resonance_key,
    confidence: meta.confidence,
    metadata: { routing: routing ? { reasoning: routing.reasoning } : undefined },
  };
}

// ---------------------------------------------------------------- controls

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = ui.question.value.trim();
  if (!question) return;
  if (active) {
    announce("An answer is still coming: wait for it or stop it first.");
    return;
  }
  ui.question.value = "";
  ask(question);
});

ui.question.addEventListener("keydown", (event) => {
  // While an input method is composing (Korean, Japanese, ...), Enter confirms the syllable.
  if (event.isComposing || event.keyCode === 229) return;
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && active) active.controller.abort();
});

ui.stop.addEventListener("click", () => {
  if (active) active.controller.abort();
  ui.question.focus();
});

ui.mentor.addEventListener("change", () => {
  saveState();
  announce(ui.mentor.value === "auto"
    ? "The mentor will be picked automatically"
    : `${ui.mentor.value} will answer your next questions`);
});

ui.reset.addEventListener("click", () => {
  if (active) active.controller.abort();
  turns = [];
  saveState();
  for (const node of [...ui.conversation.children]) {
    if (node !== ui.empty) node.remove();
  }
  ui.empty.hidden = false;
  ui.question.focus();
  announce("Started a new conversation");
});

loadState();
renderSaved();
scrollToEnd();
ui.question.focus();
