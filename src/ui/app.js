// The chat page's behaviour: plain browser JavaScript, served from this origin only (the page's
// Content-Security-Policy allows no other script). It talks to POST /chat with "stream": true
// and reads the Server-Sent Events from fetch(), because EventSource cannot send a POST body.
// Loaded as a module: strict, deferred, and nothing leaks into the global scope.
//
// Conversations live on the server (GET/DELETE /conversations/{id}): the page sends
// `conversation_id` once the first answer's `meta` event has named one, and keeps `/?c=<id>` in
// the address bar so a reload or another device opens the same conversation. This browser
// keeps a list of its conversations (id and title) and a copy of each transcript in
// localStorage: the copy is shown, and sent as `history`, when the history service is
// unavailable.
//
// In public mode the service may limit callers (questions per minute, tokens per UTC day) or
// require an API key: see "access" below.

import { renderMarkdown } from "/ui/markdown.js";

/** A conversation the server does not keep (none named yet, or the store was down): {turns}. */
const LOCAL_KEY = "ion-mentoring.conversation.v1";
/** This browser's conversations, newest first: [{id, title, updated}]. */
const LIST_KEY = "ion-mentoring.conversations.v1";
/** Followed by an id: this browser's copy of that conversation, {turns}. */
const COPY_PREFIX = "ion-mentoring.transcript.v1.";
const MENTOR_KEY = "ion-mentoring.mentor.v1";
const ID_PATTERN = /^[0-9a-f]{32}$/;

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
  sidebar: $("sidebar"),
  showList: $("show-list"),
  hideList: $("hide-list"),
  list: $("conversation-list"),
  listEmpty: $("list-empty"),
  listStatus: $("list-status"),
  scrim: $("scrim"),
  bar: document.querySelector(".bar"),
  chat: document.querySelector(".chat"),
  accessStatus: $("access-status"),
  keyForm: $("key-form"),
  keyInput: $("api-key"),
  useKey: $("use-key"),
  allowance: $("allowance"),
  keyStatus: $("key-status"),
  keyInUse: $("key-in-use"),
  forgetKey: $("forget-key"),
};
/** The width at which the list becomes a drawer (as in app.css). */
const NARROW = window.matchMedia("(max-width: 52rem)");

/**
 * The conversation on screen.
 * - `id`: the server's id, or null while it has none (a new conversation, or one the page
 *   keeps itself because the store was unavailable when it began);
 * - `turns`: completed exchanges, oldest first, {question, answer, meta, chosen, note}. A
 *   stopped or failed answer is shown but never kept;
 * - `offline`: the history service failed for this conversation, so questions carry `turns`
 *   as `history` instead of naming it;
 * - `ended`: the server no longer takes questions for it (deleted, expired or full): the next
 *   question starts a new conversation.
 */
let conversation = freshConversation();
/** The answer being streamed: {controller}. */
let active = null;
/** A transcript is being fetched: questions wait for it. */
let loading = false;

function freshConversation() {
  return { id: null, turns: [], offline: false, ended: false };
}

// ---------------------------------------------------------------- storage

function readJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || "null");
  } catch {
    return null; // Storage disabled or corrupt: as if empty.
  }
}

function writeJson(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch {
    return false; // Private mode or full storage: the page still works for its life.
  }
}

function forgetKey(key) {
  try {
    localStorage.removeItem(key);
  } catch {
    // Nothing to do.
  }
}

function savedTurns(saved) {
  if (!saved || !Array.isArray(saved.turns)) return [];
  return saved.turns.filter(
    (t) => t && typeof t.question === "string" && typeof t.answer === "string",
  );
}

function loadMentor() {
  const mentor = localStorageString(MENTOR_KEY);
  if (mentor && [...ui.mentor.options].some((o) => o.value === mentor)) {
    ui.mentor.value = mentor;
  }
}

function localStorageString(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function saveMentor() {
  try {
    localStorage.setItem(MENTOR_KEY, ui.mentor.value);
  } catch {
    // Not kept: the choice still holds until the page is closed.
  }
}

/** Keeps this browser's copy of the conversation on screen. */
function saveTurns() {
  const copy = { turns: conversation.turns };
  if (!conversation.id) {
    writeJson(LOCAL_KEY, copy);
    return;
  }
  const key = COPY_PREFIX + conversation.id;
  if (writeJson(key, copy)) return;
  // Storage is full: the copies of the least recent other conversations make room (the
  // server still has those).
  for (const entry of listed().reverse()) {
    if (entry.id === conversation.id) continue;
    forgetKey(COPY_PREFIX + entry.id);
    if (writeJson(key, copy)) return;
  }
}

/** This browser's conversations, newest first. */
function listed() {
  const list = readJson(LIST_KEY);
  if (!Array.isArray(list)) return [];
  return list
    .filter((e) => e && typeof e.id === "string" && ID_PATTERN.test(e.id))
    .map((e) => ({
      id: e.id,
      title: typeof e.title === "string" && e.title.trim() ? e.title : "Untitled conversation",
      updated: Number(e.updated) || 0,
    }));
}

function saveList(list) {
  list.sort((a, b) => b.updated - a.updated);
  writeJson(LIST_KEY, list);
  renderList();
}

/** The title a question gives a conversation: its first line of words, not too long. */
function titleFor(question) {
  const flat = question.replace(/\s+/g, " ").trim();
  return flat.length > 80 ? `${flat.slice(0, 79)}…` : flat;
}

/** Lists `id` (or moves it to the top, when `touched`), keeping a title the user gave it. */
function remember(id, title, updated = Date.now(), touched = true) {
  const list = listed();
  const known = list.find((e) => e.id === id);
  if (known) {
    if (touched) known.updated = updated;
  } else {
    list.push({ id, title: title || "Untitled conversation", updated });
  }
  saveList(list);
}

function forget(id) {
  saveList(listed().filter((e) => e.id !== id));
  forgetKey(COPY_PREFIX + id);
}

function historyToSend() {
  return conversation.turns.flatMap((t) => [
    { role: "user", content: t.question },
    { role: "assistant", content: t.answer },
  ]);
}

function showAddress() {
  const want = conversation.id ? `/?c=${conversation.id}` : "/";
  if (window.location.pathname + window.location.search !== want) {
    window.history.replaceState(null, "", want);
  }
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
  // A transcript from the server names the mentor but not the reading that chose it.
  if (!meta.resonance_key) return;
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

function clearView() {
  for (const node of [...ui.conversation.children]) {
    if (node !== ui.empty) node.remove();
  }
  ui.empty.hidden = false;
}

function renderTurns(turns) {
  for (const turn of turns) {
    addUserMessage(turn.question);
    const bubble = addAnswer();
    paintAnswerNow(bubble, turn.answer);
    if (turn.meta) showMeta(bubble, turn.meta, turn.chosen);
    if (turn.note) addNote(bubble, turn.note);
    addCopyButton(bubble, turn.answer);
  }
}

/**
 * A message about the conversation as a whole (not one answer), e.g. that it could not be
 * loaded. `kind` keeps one of each: a newer notice of the same kind replaces the older.
 */
function showNotice(kind, title, detail, offerNew) {
  for (const old of ui.conversation.querySelectorAll(`.notice-box[data-kind="${kind}"]`)) {
    old.remove();
  }
  ui.empty.hidden = true;
  const box = el("div", `notice-box ${kind}`);
  box.dataset.kind = kind;
  box.append(el("p", "notice-title", title));
  if (detail) box.append(el("p", "notice-detail", detail));
  if (offerNew) box.append(freshButton());
  ui.conversation.append(box);
  scrollToEnd();
  return box;
}

/** A button that starts a new conversation (named apart from the header's button). */
function freshButton() {
  const tools = el("div", "tools");
  const fresh = el("button", "small primary", "Start a fresh conversation");
  fresh.type = "button";
  fresh.addEventListener("click", () => startNew());
  tools.append(fresh);
  return tools;
}

const STORE_DOWN_TITLE = "The history service is unavailable right now.";

/** The store failed for a conversation the server keeps: go on with this browser's copy. */
function goOffline() {
  if (conversation.offline) return;
  conversation.offline = true;
  showNotice(
    "offline",
    STORE_DOWN_TITLE,
    "Answers still work without it: this page sends the conversation as this browser kept it "
      + `(${conversation.turns.length} exchanges) with each question. What is asked meanwhile is `
      + "not saved by the service.",
  );
}

// ---------------------------------------------------------------- problems

/** What went wrong, in words, from an error response (contract: {error, status_code, code}). */
function describeFailure(status, body, retryAfter) {
  const code = errorCode(body);
  const said = body && typeof body.error === "string" && body.error !== code ? body.error : "";
  const ref = `HTTP ${status}${code ? `, ${code}` : ""}`;
  if (code === "conversation_not_found") {
    return {
      title: "This conversation is no longer kept by the service: it expired or was deleted.",
      detail: "Your question is back in the box below. Sending it starts a new conversation.",
      restore: true,
      ended: true,
      offerNew: true,
    };
  }
  if (code === "conversation_full") {
    const limit = body && body.turn_limit ? ` (${body.turn_limit} exchanges)` : "";
    return {
      title: `This conversation is full${limit}.`,
      detail: "Your question is back in the box below. Sending it starts a new conversation; "
        + "this one stays in your list.",
      restore: true,
      ended: true,
      offerNew: true,
    };
  }
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

/** The machine-readable code of an error body: `code`, or an `error` that is one. */
function errorCode(body) {
  if (!body) return "";
  if (typeof body.code === "string") return body.code;
  return typeof body.error === "string" && /^[a-z_]+$/.test(body.error) ? body.error : "";
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
  if (problem.offerNew) box.append(freshButton());
  if (!problem.retry) return;

  const tools = el("div", "tools");
  const retry = el("button", "small primary", "Retry");
  retry.type = "button";
  tools.append(retry);
  box.append(tools);
  let timer = 0;
  retry.addEventListener("click", () => {
    if (active) return;
    if (access.wait) {
      announce("Sending is paused until the wait is over.");
      return;
    }
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

// ---------------------------------------------------------------- access: limits and keys
//
// A public service may limit callers without a key (per network address: questions per
// minute, tokens per UTC day) and may require an API key. The page says what is left (GET
// /usage on load, then the RateLimit headers on each answer's head), says plainly when a limit
// refused a question and for how long (sending is paused meanwhile; the question goes back to
// the box), and takes an API key when the service asks for one. The key is kept in
// sessionStorage only (this tab, until it closes or the key is forgotten) and sent only to this
// origin, as `Authorization: Bearer <key>`, on /chat and /usage.

/** This tab's API key, in sessionStorage. */
const API_KEY = "ion-mentoring.api-key.v1";

const access = {
  /** The API key sent with questions, or "". */
  key: sessionString(API_KEY),
  /** Its name, as the service gave it. */
  keyName: "",
  /** The service wants a key (it refused a request without one): none is asked without it. */
  required: false,
  /** What is left: {requests: {limit, left, reset}|null, tokens: {limit, left, resetsAt}|null}. */
  allowance: null,
  /** Sending is paused by a limit: {timer}. */
  wait: null,
  /** The next look at GET /usage, when none is left this minute. */
  refresh: 0,
};

function sessionString(key) {
  try {
    return sessionStorage.getItem(key) || "";
  } catch {
    return "";
  }
}

function keepKey(key) {
  access.key = key;
  try {
    if (key) sessionStorage.setItem(API_KEY, key);
    else sessionStorage.removeItem(API_KEY);
  } catch {
    // Storage disabled: the key still holds until the page is closed.
  }
}

function keyHeaders(key) {
  return key ? { authorization: `Bearer ${key}` } : {};
}

/** The public part of a key (`ion_sk_<id>`), never its secret. */
function keyPrefix(key) {
  const match = /^(ion_sk_[0-9a-f]{12})_/.exec(key);
  return match ? match[1] : "";
}

function count(value) {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : null;
}

function number(n) {
  return new Intl.NumberFormat().format(n);
}

function plural(n, word) {
  return `${number(n)} ${n === 1 ? word : `${word}s`}`;
}

/** A moment in the reader's time zone: "today at 09:00 GMT+9", "tomorrow at …". */
function localMoment(ms) {
  const when = new Date(ms);
  const time = when.toLocaleTimeString(undefined, {
    hour: "numeric", minute: "2-digit", timeZoneName: "short",
  });
  const midnight = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((midnight(when) - midnight(new Date())) / 86_400_000);
  if (days === 0) return `today at ${time}`;
  if (days === 1) return `tomorrow at ${time}`;
  const date = when.toLocaleDateString(undefined, {
    weekday: "long", day: "numeric", month: "long",
  });
  return `on ${date} at ${time}`;
}

/** A wait, to the second: "42 s", "3 min 05 s", "7 h 02 min 09 s". */
function duration(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const two = (n) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return `${h} h ${two(m)} min ${two(s % 60)} s`;
  if (m) return `${m} min ${two(s % 60)} s`;
  return `${s} s`;
}

/** A message about access, above the question box (a live region). `parts` are strings and
 *  nodes; `kind` names it for the style sheet. */
function showAccessStatus(kind, title, ...parts) {
  const box = el("div", `access-box ${kind}`);
  box.dataset.kind = kind;
  box.append(el("p", "access-title", title));
  if (parts.length) {
    const detail = el("p", "access-detail");
    detail.append(...parts);
    box.append(detail);
  }
  ui.accessStatus.replaceChildren(box);
}

function clearAccessStatus() {
  ui.accessStatus.replaceChildren();
}

/** The allowance from GET /usage. */
function takeUsage(body) {
  const usage = body.usage || {};
  access.keyName = body.key && typeof body.key.name === "string" ? body.key.name : "";
  const rpm = count(usage.requests_per_minute);
  const budget = count(usage.daily_token_budget);
  access.allowance = {
    requests: rpm === null ? null : {
      limit: rpm,
      left: count(usage.requests_remaining) ?? rpm,
      reset: count(usage.requests_reset_seconds) ?? 0,
    },
    tokens: budget === null ? null : {
      limit: budget,
      left: count(usage.tokens_remaining) ?? budget,
      resetsAt: Date.parse(usage.resets_at) || null,
    },
  };
  renderAllowance();
  renderKeyStatus();
}

/** The items of a `RateLimit` or `RateLimit-Policy` header: {"requests": {q, w, r, t}, …}. */
function limitItems(value) {
  const items = {};
  for (const item of (value || "").split(",")) {
    const [name, ...params] = item.split(";").map((p) => p.trim());
    const key = name.replace(/^"(.*)"$/, "$1");
    if (!key) continue;
    items[key] = {};
    for (const param of params) {
      const [field, raw] = param.split("=");
      const n = Number(raw);
      if (field && Number.isFinite(n)) items[key][field.trim()] = n;
    }
  }
  return items;
}

/** What is left after a chat was counted (or refused), from its response's headers. */
function noteLimitHeaders(headers) {
  const policy = limitItems(headers.get("ratelimit-policy"));
  const state = limitItems(headers.get("ratelimit"));
  const now = Date.now();
  const allowance = access.allowance || { requests: null, tokens: null };
  let changed = false;
  const requests = state.requests;
  const requestLimit = policy.requests?.q ?? allowance.requests?.limit;
  if (requests && count(requests.r) !== null && requestLimit) {
    allowance.requests = { limit: requestLimit, left: requests.r, reset: count(requests.t) ?? 0 };
    changed = true;
  }
  const tokens = state.tokens;
  const tokenLimit = policy.tokens?.q ?? allowance.tokens?.limit;
  if (tokens && count(tokens.r) !== null && tokenLimit) {
    // `t` counts to UTC midnight: to the minute, so that a second of clock skew shows no 08:59.
    const resetsAt = Math.round((now + (count(tokens.t) ?? 0) * 1000) / 60_000) * 60_000;
    allowance.tokens = { limit: tokenLimit, left: tokens.r, resetsAt };
    changed = true;
  }
  if (changed) {
    access.allowance = allowance;
    renderAllowance();
  }
}

/** An answer's tokens (its `done` event), which the service adds to the day once it is sent. */
function spendTokens(tokens) {
  const budget = access.allowance && access.allowance.tokens;
  if (!budget || !(tokens > 0)) return;
  budget.left = Math.max(0, budget.left - tokens);
  renderAllowance();
}

/** The line under the question box: nothing when no limit applies. */
function renderAllowance() {
  const allowance = access.allowance;
  const parts = [];
  if (allowance && allowance.requests) {
    const { left, limit } = allowance.requests;
    parts.push(`Left this minute: ${number(left)} of ${plural(limit, "question")}.`);
  }
  if (allowance && allowance.tokens) {
    const { left, limit, resetsAt } = allowance.tokens;
    const renews = resetsAt ? ` (renews ${localMoment(resetsAt)})` : "";
    parts.push(`Left today: ${number(left)} of ${plural(limit, "token")}${renews}.`);
  }
  const text = parts.join(" ");
  if (ui.allowance.textContent !== text) ui.allowance.textContent = text;
  // None left this minute: look again once the oldest question has left the minute.
  window.clearTimeout(access.refresh);
  if (allowance && allowance.requests && allowance.requests.left === 0 && !access.wait) {
    const seconds = Math.max(allowance.requests.reset, 1) + 1;
    access.refresh = window.setTimeout(refreshUsage, seconds * 1000);
  }
}

function renderKeyStatus() {
  ui.keyStatus.hidden = !access.key;
  if (!access.key) {
    ui.keyInUse.textContent = "";
    return;
  }
  const name = access.keyName ? ` “${access.keyName}”` : "";
  const prefix = keyPrefix(access.key);
  ui.keyInUse.textContent = `Using the API key${name}${prefix ? ` (${prefix}…)` : ""}.`;
}

/** Asks GET /usage where this caller stands (and whether the service needs a key). */
async function refreshUsage() {
  window.clearTimeout(access.refresh);
  const sentKey = access.key;
  let response = null;
  let body = null;
  try {
    response = await fetch("/usage", {
      headers: { accept: "application/json", ...keyHeaders(sentKey) },
      cache: "no-store",
    });
    body = await response.json();
  } catch {
    return; // unreachable, or an older service without /usage: nothing is said about limits
  }
  if (sentKey !== access.key) return; // the key changed meanwhile: that answer is out of date
  if (response.status === 401 && errorCode(body) === "invalid_api_key") {
    keyRefused(sentKey);
    return;
  }
  if (!response.ok || !body || typeof body.usage !== "object" || !body.usage) return;
  if (sentKey && body.caller !== "key") {
    notKeyed();
  } else if (!sentKey) {
    access.required = false;
  }
  takeUsage(body);
}

/** The service refused a key (`key` was sent, now forgotten) or wants one (`key` empty). */
function keyRefused(key) {
  if (key !== access.key) return; // about a key replaced meanwhile
  ui.keyForm.hidden = false;
  if (key) {
    keepKey("");
    access.keyName = "";
    access.allowance = null;
    renderAllowance();
    renderKeyStatus();
    showAccessStatus(
      "key refused",
      "The service refused the API key this page was using: it is unknown or was revoked.",
      "The page forgot it. Paste another key below; your question is still in the box.",
    );
    return;
  }
  access.required = true;
  access.allowance = null;
  renderAllowance();
  showAccessStatus(
    "key needed",
    "This service needs an API key.",
    "Paste yours below to send questions. Whoever runs the service can give you one.",
  );
}

/** The service does not read keys (no key mode): the page stops sending one. */
function notKeyed() {
  keepKey("");
  access.keyName = "";
  access.required = false;
  ui.keyForm.hidden = true;
  renderKeyStatus();
  showAccessStatus("key", "This service does not use API keys: the page no longer sends one.");
}

/** Pauses sending after a limit refused a question (`code`: rate_limited or budget_exceeded). */
function pauseSending(code, seconds, body, keyed) {
  if (access.wait) window.clearInterval(access.wait.timer);
  window.clearTimeout(access.refresh);
  const until = Date.now() + Math.max(1, seconds) * 1000;
  const left = el("span", "countdown", duration(seconds));
  // Updated every second: kept out of the live announcements.
  left.setAttribute("aria-live", "off");
  const whose = keyed ? "for this API key" : "for your network address";
  if (code === "budget_exceeded") {
    const budget = count(body.daily_token_budget);
    const of = budget === null ? "" : `of ${plural(budget, "token")} `;
    const renews = Date.parse(body.resets_at) || until;
    showAccessStatus(
      "limit",
      `Your question was not sent: today's allowance ${of}${whose} is used up.`,
      `It renews ${localMoment(renews)}, in `,
      left,
      ". Your question is still in the box below.",
    );
  } else {
    const rpm = count(body.requests_per_minute);
    showAccessStatus(
      "limit",
      "Your question was not sent: "
        + (rpm ? `the service takes ${plural(rpm, "question")} a minute ${whose}.`
          : "too many questions in the last minute."),
      "You can send it again in ",
      left,
      ". It is still in the box below.",
    );
  }
  const tick = () => {
    const rest = Math.ceil((until - Date.now()) / 1000);
    if (rest > 0) {
      left.textContent = duration(rest);
      return;
    }
    window.clearInterval(access.wait.timer);
    access.wait = null;
    updateSend();
    showAccessStatus("ready", "The wait is over: you can send your question now.");
    refreshUsage();
  };
  access.wait = { timer: window.setInterval(tick, 1000) };
  updateSend();
  ui.question.focus();
}

/** Takes back a question the service did not take: off the screen, back into the box. */
function withdraw(bubble, userMessage, question) {
  bubble.article.remove();
  if (userMessage) userMessage.remove();
  if (!ui.conversation.querySelector(".message, .notice-box")) ui.empty.hidden = false;
  const typed = ui.question.value;
  if (!typed.trim()) ui.question.value = question;
  else if (typed !== question) ui.question.value = `${question}\n\n${typed}`;
}

/** Checks a pasted key with GET /usage, and keeps it (in this tab) if the service takes it. */
async function useKey(pasted) {
  const candidate = pasted.trim().replace(/^bearer\s+/i, "");
  if (!/^[\x21-\x7e]+$/.test(candidate)) {
    showAccessStatus(
      "key refused",
      candidate ? "That is not an API key." : "Paste an API key first.",
      "A key is one word that starts with ion_sk_.",
    );
    ui.keyInput.focus();
    return;
  }
  ui.useKey.disabled = true;
  let response = null;
  let body = null;
  try {
    response = await fetch("/usage", {
      headers: { accept: "application/json", ...keyHeaders(candidate) },
      cache: "no-store",
    });
    body = await response.json();
  } catch {
    body = null;
  } finally {
    ui.useKey.disabled = false;
  }
  if (response && response.ok && body && body.caller === "key") {
    keepKey(candidate);
    ui.keyInput.value = "";
    ui.keyForm.hidden = true;
    takeUsage(body);
    const name = access.keyName ? ` “${access.keyName}”` : "";
    showAccessStatus(
      "key accepted",
      `The service accepted the API key${name}. You can send questions.`,
    );
    ui.question.focus();
  } else if (response && response.ok && body) {
    ui.keyInput.value = "";
    notKeyed();
    takeUsage(body);
    ui.question.focus();
  } else if (response && response.status === 401) {
    showAccessStatus(
      "key refused",
      "The service refused this key: it is malformed, unknown or revoked.",
      "Check that it was pasted whole, or ask for another.",
    );
    ui.keyInput.select();
    ui.keyInput.focus();
  } else {
    const code = errorCode(body);
    showAccessStatus(
      "key refused",
      "The key could not be checked right now. Try again in a moment.",
      response ? `(HTTP ${response.status}${code ? `, ${code}` : ""})` : "(no connection)",
    );
  }
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
  ui.stop.hidden = !busy;
  updateSend();
}

/** Send waits for an answer on its way, a conversation being loaded, and a limit's pause. */
function updateSend() {
  ui.send.disabled = Boolean(active) || loading || Boolean(access.wait);
}

/** Asks `question` in the conversation on screen, streaming the answer into a new bubble. */
async function ask(question, showQuestion = true) {
  let show = showQuestion;
  if (conversation.ended) {
    startNew(false);
    show = true; // a retry from the ended conversation's screen: the question goes along
  }
  // The question on screen: withdrawn again if the service does not take it (a limit, a key).
  let userMessage = null;
  if (show) {
    userMessage = addUserMessage(question);
  } else if (ui.conversation.lastElementChild?.classList.contains("user")) {
    userMessage = ui.conversation.lastElementChild; // a retry: the question is already shown
  }
  clearAccessStatus();
  const bubble = addAnswer();
  bubble.article.classList.add("streaming");
  const chosen = ui.mentor.value !== "auto";
  const asked = conversation; // the conversation this question belongs to, whatever happens next
  const request = { message: question, stream: true };
  if (asked.id && !asked.offline) request.conversation_id = asked.id;
  else if (asked.turns.length) request.history = historyToSend();
  if (chosen) request.persona = ui.mentor.value;

  const controller = new AbortController();
  const sentKey = access.key;
  active = { controller };
  setBusy(true);
  let meta = null;
  let answer = "";
  let finished = false;
  let unsaved = false; // complete, but the history service could not keep it
  let askAgain = false;
  try {
    attempt: {
      const response = await fetch("/chat", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "text/event-stream",
          ...keyHeaders(sentKey),
        },
        body: JSON.stringify(request),
        signal: controller.signal,
      });
      const type = response.headers.get("content-type") || "";
      noteLimitHeaders(response.headers);
      if (!response.ok) {
        let body = null;
        try { body = await response.json(); } catch { body = null; }
        const code = errorCode(body);
        if (response.status === 401 && code === "invalid_api_key") {
          // Not asked: the question goes back to the box, and the page asks for a key.
          withdraw(bubble, userMessage, question);
          keyRefused(sentKey);
          ui.keyInput.focus();
        } else if (response.status === 429
          && (code === "rate_limited" || code === "budget_exceeded")) {
          // Not asked: the question goes back to the box until the limit allows it.
          withdraw(bubble, userMessage, question);
          const wait = Number.isFinite(body?.retry_after) ? body.retry_after
            : retryAfterSeconds(response.headers.get("retry-after"));
          pauseSending(code, wait, body || {}, Boolean(sentKey));
        } else if (response.status === 503 && errorCode(body) === "store_unavailable"
          && request.conversation_id) {
          // The conversation cannot be read: ask again with this browser's copy as history.
          goOffline();
          bubble.article.remove();
          askAgain = true;
        } else {
          const wait = retryAfterSeconds(response.headers.get("retry-after"));
          const problem = describeFailure(response.status, body, wait);
          if (problem.ended && asked === conversation) {
            conversation.ended = true;
            if (errorCode(body) === "conversation_not_found") forget(conversation.id);
          }
          showProblem(bubble, problem, question);
          announce("The question got no answer: see the message in the conversation.");
        }
        break attempt;
      }
      if (!type.startsWith("text/event-stream")) {
        throw new Error(`expected an event stream, got ${type || "no content type"}`);
      }
      for await (const { event, data } of serverSentEvents(response.body)) {
        const payload = JSON.parse(data);
        if (event === "meta") {
          meta = payload;
          showMeta(bubble, meta, chosen);
          adoptConversation(asked, payload, request, question);
        } else if (event === "delta") {
          answer += payload.text || "";
          paintAnswer(bubble, answer);
        } else if (event === "done") {
          finished = true;
          spendTokens(payload.usage && payload.usage.total_tokens);
          bubble.note = doneNote(payload);
          break;
        } else if (event === "error") {
          if (payload.code === "store_unavailable" && answer) {
            // The whole answer came, and then the history service failed to keep it.
            finished = true;
            unsaved = true;
            bubble.note = "The history service could not save this answer: it is shown here, and "
              + "sent along with your next questions from this page.";
            break;
          }
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
    }
  } catch (error) {
    if (error.name === "AbortError") {
      bubble.article.classList.add("stopped");
      if (!answer) bubble.text.hidden = true;
      addNote(bubble, answer
        ? "Stopped. This partial answer is not kept in the conversation."
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
  if (askAgain) {
    await ask(question, false);
    return;
  }
  if (finished && answer) {
    if (bubble.note) addNote(bubble, bubble.note);
    addCopyButton(bubble, answer);
    // Kept only if the page still shows the conversation it was asked in.
    if (asked === conversation) {
      conversation.turns.push({
        question, answer, meta: slimMeta(meta), chosen, note: bubble.note || "",
      });
      if (unsaved && conversation.id) goOffline();
      saveTurns();
      if (conversation.id) remember(conversation.id, titleFor(question));
    }
    announce("Answer complete");
  } else if (finished) {
    showProblem(bubble, { title: "The mentor gave an empty answer.", retry: true }, question);
  }
}

/**
 * The first `meta` event of a new conversation names it: from then on questions send its id,
 * and the address bar links to it. A `null` id where one was due means the store is down.
 */
function adoptConversation(asked, meta, request, question) {
  if (asked !== conversation || conversation.id || request.history) return;
  if (typeof meta.conversation_id === "string" && ID_PATTERN.test(meta.conversation_id)) {
    conversation.id = meta.conversation_id;
    forgetKey(LOCAL_KEY);
    remember(conversation.id, titleFor(question));
    showAddress();
  } else if (meta.conversation_id === null) {
    showNotice(
      "offline",
      STORE_DOWN_TITLE,
      "Answers still work without it: this conversation is kept in this browser only, and "
        + "sent along with each question.",
    );
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

// ---------------------------------------------------------------- conversations

/** Clears the screen for a new conversation (the header's button, or after one ended). */
function startNew(focus = true) {
  if (active) active.controller.abort();
  conversation = freshConversation();
  forgetKey(LOCAL_KEY);
  clearView();
  showAddress();
  renderList();
  if (focus) {
    ui.question.focus();
    announce("Started a new conversation");
  }
}

/** Opens conversation `id` (from the address bar): the server's transcript, else this
 *  browser's copy. */
async function openConversation(id) {
  const copy = savedTurns(readJson(COPY_PREFIX + id));
  conversation = { ...freshConversation(), id, turns: copy };
  const opening = conversation;
  renderList();
  loading = true;
  updateSend();
  const wait = showNotice("loading", "Loading the conversation…", "", false);
  let response = null;
  let body = null;
  try {
    response = await fetch(`/conversations/${id}`, { headers: { accept: "application/json" } });
    body = await response.json();
  } catch {
    body = null; // unreachable, or not JSON: handled as unavailable below
  } finally {
    loading = false;
    updateSend();
    wait.remove();
  }
  if (conversation !== opening) return; // a new conversation was started meanwhile
  if (response && response.ok && body && Array.isArray(body.turns)) {
    conversation.turns = body.turns
      .filter((t) => t && typeof t.question === "string" && typeof t.answer === "string")
      .map((t, n) => fromServer(t, copy[n]));
    saveTurns();
    ui.empty.hidden = conversation.turns.length > 0;
    const first = conversation.turns[0];
    const updated = Number(body.updated_at) * 1000 || Date.now();
    remember(id, first ? titleFor(first.question) : "", updated, false);
    renderTurns(conversation.turns);
    scrollToEnd();
  } else if (response && response.status === 404) {
    forget(id);
    conversation = freshConversation();
    showAddress();
    renderList();
    showNotice(
      "gone",
      "This conversation is no longer available: it expired or was deleted.",
      "Ask a question below to start a new conversation.",
      true,
    );
  } else {
    const why = errorCode(body) === "store_unavailable" || (response && response.status === 503)
      ? STORE_DOWN_TITLE
      : `The conversation could not be loaded (${response ? `HTTP ${response.status}` : "no connection"}).`;
    conversation.offline = true;
    renderTurns(conversation.turns);
    showNotice(
      "offline",
      why,
      conversation.turns.length
        ? `Answers still work without it: below is this conversation as this browser kept it `
          + `(${conversation.turns.length} exchanges), and it is sent along with each question.`
        : "Answers still work without it, but this browser has no copy of this conversation: "
          + "your questions are answered without its earlier turns.",
    );
  }
}

/** A turn of a server transcript, with what this browser saw of it when it was asked. */
function fromServer(turn, seen) {
  const same = seen && seen.question === turn.question && seen.answer === turn.answer;
  return {
    question: turn.question,
    answer: turn.answer,
    meta: same && seen.meta ? seen.meta : { persona_used: turn.persona },
    chosen: same ? Boolean(seen.chosen) : false,
    note: same ? seen.note || "" : "",
  };
}

/** The list of this browser's conversations, in the sidebar. */
function renderList() {
  const list = listed();
  ui.listEmpty.hidden = list.length > 0;
  ui.list.replaceChildren(...list.map(listItem));
}

function listItem(entry) {
  const item = el("li", "conversation-item");
  item.dataset.id = entry.id;
  const link = el("a", "conversation-link", entry.title);
  link.href = `/?c=${entry.id}`;
  if (entry.id === conversation.id) {
    link.setAttribute("aria-current", "page");
    item.classList.add("current");
  }
  const tools = el("div", "item-tools");
  const rename = el("button", "small", "Rename");
  rename.type = "button";
  rename.append(el("span", "visually-hidden", ` “${entry.title}”`));
  rename.addEventListener("click", () => startRename(item, entry));
  const remove = el("button", "small", "Delete");
  remove.type = "button";
  remove.append(el("span", "visually-hidden", ` “${entry.title}”`));
  remove.addEventListener("click", () => confirmDelete(item, entry));
  tools.append(rename, remove);
  item.append(link, tools);
  return item;
}

function focusListed(id) {
  const link = [...ui.list.querySelectorAll(".conversation-link")]
    .find((a) => a.closest("li").dataset.id === id);
  (link || ui.reset).focus();
}

/** Renaming changes the title this browser shows; the server keeps no titles. */
function startRename(item, entry) {
  const form = el("form", "rename");
  const label = el("label", "visually-hidden", `New title for “${entry.title}”`);
  const input = el("input");
  input.id = `rename-${entry.id}`;
  label.htmlFor = input.id;
  input.value = entry.title;
  input.maxLength = 120;
  const save = el("button", "small primary", "Save");
  save.type = "submit";
  const cancel = el("button", "small", "Cancel");
  cancel.type = "button";
  form.append(label, input, save, cancel);
  const done = (title) => {
    if (title) {
      const list = listed();
      const known = list.find((e) => e.id === entry.id);
      if (known) known.title = title;
      saveList(list);
      announce(`Renamed to “${title}”`);
    } else {
      renderList();
    }
    focusListed(entry.id);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    done(titleFor(input.value));
  });
  cancel.addEventListener("click", () => done(""));
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      done("");
    }
  });
  item.replaceChildren(form);
  input.focus();
  input.select();
}

function confirmDelete(item, entry) {
  const box = el("div", "confirm");
  box.append(el("p", "", `Delete “${entry.title}”? It is removed from the service too.`));
  const tools = el("div", "item-tools");
  const yes = el("button", "small danger", "Yes, delete");
  yes.type = "button";
  const no = el("button", "small", "Cancel");
  no.type = "button";
  tools.append(yes, no);
  box.append(tools);
  item.replaceChildren(box);
  no.focus();
  no.addEventListener("click", () => {
    renderList();
    focusListed(entry.id);
  });
  yes.addEventListener("click", () => deleteConversation(entry, yes));
}

async function deleteConversation(entry, button) {
  button.disabled = true;
  ui.listStatus.textContent = `Deleting “${entry.title}”…`;
  let status = 0;
  try {
    const response = await fetch(`/conversations/${entry.id}`, { method: "DELETE" });
    status = response.status;
  } catch {
    status = 0;
  }
  if (status === 204 || status === 200 || status === 404) {
    // Gone from the service (404: it was already): gone from this browser too.
    forget(entry.id);
    if (conversation.id === entry.id) startNew(false);
    ui.listStatus.textContent = `Deleted “${entry.title}”.`;
    ui.reset.focus();
    return;
  }
  renderList();
  ui.listStatus.textContent = status === 503
    ? `“${entry.title}” was not deleted: the history service is unavailable. Try again later.`
    : `“${entry.title}” was not deleted (${status ? `HTTP ${status}` : "no connection"}).`;
  focusListed(entry.id);
}

/** At phone width the list is a drawer over the conversation, which is inert meanwhile (a
 *  modal: Tab stays in the drawer, Escape or Close leaves it). */
function setDrawer(open) {
  ui.sidebar.classList.toggle("open", open);
  ui.scrim.hidden = !open;
  ui.showList.setAttribute("aria-expanded", String(open));
  ui.bar.inert = open;
  ui.chat.inert = open;
  if (open) {
    (ui.list.querySelector("[aria-current]") || ui.hideList).focus();
  }
}

function drawerOpen() {
  return ui.sidebar.classList.contains("open");
}

// ---------------------------------------------------------------- controls

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = ui.question.value.trim();
  if (!question) return;
  if (loading) {
    announce("The conversation is still loading: ask again in a moment.");
    return;
  }
  if (active) {
    announce("An answer is still coming: wait for it or stop it first.");
    return;
  }
  if (access.wait) {
    announce("Sending is paused until the wait is over: your question stays in the box.");
    return;
  }
  if (access.required && !access.key) {
    // The service would refuse it: the question stays in the box until a key is given.
    keyRefused("");
    ui.keyInput.focus();
    return;
  }
  ui.question.value = "";
  ask(question);
});

ui.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  useKey(ui.keyInput.value);
});

ui.forgetKey.addEventListener("click", async () => {
  keepKey("");
  access.keyName = "";
  access.allowance = null;
  renderAllowance();
  renderKeyStatus();
  showAccessStatus("key", "The page forgot the API key: it is no longer kept or sent.");
  ui.question.focus();
  await refreshUsage(); // without a key: the anonymous limits, or the service wants one
  if (!ui.keyForm.hidden) ui.keyInput.focus();
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
  if (event.key !== "Escape") return;
  if (drawerOpen()) {
    setDrawer(false);
    ui.showList.focus();
  } else if (active) {
    active.controller.abort();
  }
});

ui.stop.addEventListener("click", () => {
  if (active) active.controller.abort();
  ui.question.focus();
});

ui.mentor.addEventListener("change", () => {
  saveMentor();
  announce(ui.mentor.value === "auto"
    ? "The mentor will be picked automatically"
    : `${ui.mentor.value} will answer your next questions`);
});

ui.reset.addEventListener("click", () => startNew());
ui.showList.addEventListener("click", () => setDrawer(!drawerOpen()));
ui.hideList.addEventListener("click", () => {
  setDrawer(false);
  ui.showList.focus();
});
ui.scrim.addEventListener("click", () => setDrawer(false));
// Grown past phone width with the drawer open: the list is a sidebar again.
NARROW.addEventListener("change", () => {
  if (!NARROW.matches && drawerOpen()) setDrawer(false);
});

// Back to a tab left open: what is left may have changed meanwhile.
let lastLook = 0;
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible" || active || Date.now() - lastLook < 10_000) return;
  lastLook = Date.now();
  refreshUsage();
});

// Another tab changed the list: show it.
window.addEventListener("storage", (event) => {
  if (event.key === LIST_KEY) renderList();
});

loadMentor();
ui.question.focus();
renderKeyStatus();
refreshUsage();
const linked = new URLSearchParams(window.location.search).get("c");
if (linked === null) {
  // No conversation named: this browser's unsaved one, if it has one, else a new one.
  conversation.turns = savedTurns(readJson(LOCAL_KEY));
  renderList();
  renderTurns(conversation.turns);
  scrollToEnd();
} else if (ID_PATTERN.test(linked)) {
  openConversation(linked);
} else {
  showAddress();
  renderList();
  showNotice(
    "gone",
    "This link does not name a conversation.",
    "Ask a question below to start a new one, or pick one from your list.",
    true,
  );
}
