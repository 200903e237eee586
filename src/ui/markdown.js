// Markdown for the mentors' answers, rendered straight to DOM nodes. Every element is made with
// document.createElement and every piece of text goes in as a text node, so HTML in an answer
// is shown as the text it is and never parsed. Links keep only absolute http:, https: and
// mailto: targets; anything else stays plain text.
//
// The subset is what Gemini writes: paragraphs, ATX headings, emphasis, strikethrough, inline
// code, fenced code blocks (an unterminated fence runs to the end, so a streaming answer shows
// code as code), bullet and numbered lists (nested), block quotes, horizontal rules, GFM
// tables, links, autolinks and bare http(s) URLs. A line break inside a paragraph is kept, as
// chat answers mean it. Raw HTML, images (shown as links) and setext headings are not rendered.
//
// Hostile input stays cheap: nesting is capped, and every forward search is either bounded or
// cached so that a string of unmatched delimiters costs linear time, not quadratic.

/** Block quotes and lists nested deeper than this are shown as plain paragraphs. */
const MAX_BLOCK_DEPTH = 12;
/** Emphasis and links nested deeper than this are shown as text. */
const MAX_INLINE_DEPTH = 8;
/** A link destination longer than this is not a link. */
const MAX_DESTINATION = 2048;
/** Longer backtick runs never open a code span (keeps the search cache small). */
const MAX_CODE_RUN = 16;

const ALLOWED_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

// ---------------------------------------------------------------- public

/**
 * Renders `source` into `container`, reusing the nodes of `previous` (what the last call
 * returned for this container) for the leading blocks whose source is unchanged, so that an
 * answer re-rendered on every streamed delta only rebuilds its last block or two.
 * Returns the state to pass next time.
 */
export function renderMarkdown(container, source, previous = []) {
  const lines = splitLines(source);
  const blocks = parseBlocks(lines, 0);
  const next = [];
  let k = 0;
  for (; k < blocks.length && k < previous.length; k++) {
    const src = blockSource(lines, blocks[k]);
    if (previous[k].src !== src) break;
    next.push(previous[k]);
  }
  for (let j = k; j < previous.length; j++) previous[j].node.remove();
  for (; k < blocks.length; k++) {
    const node = renderBlock(blocks[k], false);
    container.append(node);
    next.push({ src: blockSource(lines, blocks[k]), node });
  }
  return next;
}

/** The href a link may have: the normalised URL when it is absolute http(s) or mailto, else null. */
export function safeHref(raw) {
  const text = decodeEntities(raw);
  // No whitespace or control characters anywhere: browsers strip them from schemes
  // ("java\tscript:"), so a URL containing any is refused rather than cleaned.
  if (!text || /[\u0000-\u0020\u007f-\u009f\u00a0\u2028\u2029\ufeff]/.test(text)) return null;
  if (!/^(?:https?:\/\/[^/?#\\]|mailto:[^/])/i.test(text)) return null;
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  return ALLOWED_PROTOCOLS.has(url.protocol) ? url.href : null;
}

// ---------------------------------------------------------------- blocks

const FENCE = /^ {0,3}(`{3,}|~{3,})(.*)$/;
const FENCE_CLOSE = /^ {0,3}(`{3,}|~{3,})[ \t]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*))?$/;
const RULE = /^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$/;
const QUOTE = /^ {0,3}>[ \t]?(.*)$/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*))?$/;
const TABLE_DELIMITER = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

function splitLines(text) {
  return text.replace(/\r\n?/g, "\n").split("\n");
}

function blockSource(lines, block) {
  return lines.slice(block.start, block.end).join("\n");
}

function isBlank(line) {
  return !/\S/.test(line);
}

/** Columns of leading whitespace (a tab counts 4). */
function indentWidth(line) {
  let width = 0;
  for (const c of line) {
    if (c === " ") width += 1;
    else if (c === "\t") width += 4;
    else break;
  }
  return width;
}

/** `line` without up to `columns` columns of leading whitespace. */
function dedent(line, columns) {
  let i = 0;
  let width = 0;
  while (i < line.length && width < columns && (line[i] === " " || line[i] === "\t")) {
    width += line[i] === "\t" ? 4 : 1;
    i += 1;
  }
  return line.slice(i);
}

function isFenceOpening(line) {
  const m = FENCE.exec(line);
  return m && !(m[1][0] === "`" && m[2].includes("`")) ? m : null;
}

function startsBlock(line) {
  return Boolean(isFenceOpening(line)) || HEADING.test(line) || RULE.test(line)
    || QUOTE.test(line) || ITEM.test(line);
}

function startsTable(lines, i) {
  return i + 1 < lines.length && lines[i].includes("|") && TABLE_DELIMITER.test(lines[i + 1])
    && splitRow(lines[i]).length === splitRow(lines[i + 1]).length;
}

/**
 * The blocks of `lines`: {type, start, end, ...} with `start`/`end` the line range, which is
 * how renderMarkdown tells a changed block from an unchanged one.
 */
function parseBlocks(lines, depth) {
  const blocks = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i += 1;
      continue;
    }
    const start = i;
    if (depth >= MAX_BLOCK_DEPTH) {
      // Too deep to be meant: the rest is shown as its text.
      const text = [];
      while (i < lines.length) text.push(lines[i++].trim());
      blocks.push({ type: "para", text: text.filter(Boolean).join("\n"), start, end: i });
      break;
    }
    let m = isFenceOpening(line);
    if (m) {
      const fence = m[1];
      const indent = indentWidth(line);
      const body = [];
      i += 1;
      while (i < lines.length) {
        const close = FENCE_CLOSE.exec(lines[i]);
        if (close && close[1][0] === fence[0] && close[1].length >= fence.length) {
          i += 1;
          break;
        }
        body.push(dedent(lines[i], indent));
        i += 1;
      }
      const lang = m[2].trim().split(/\s/)[0];
      blocks.push({
        type: "code",
        lang: /^[A-Za-z0-9_+#.-]{1,32}$/.test(lang) ? lang : "",
        text: body.join("\n"),
        start,
        end: i,
      });
      continue;
    }
    if ((m = HEADING.exec(line))) {
      const text = (m[2] || "").replace(/(?:^|[ \t]+)#+[ \t]*$/, "").trim();
      blocks.push({ type: "heading", level: m[1].length, text, start, end: i + 1 });
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      blocks.push({ type: "rule", start, end: i + 1 });
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length) {
        const q = QUOTE.exec(lines[i]);
        if (q) {
          inner.push(q[1]);
        } else if (!isBlank(lines[i]) && inner.length && !isBlank(inner[inner.length - 1])
          && !startsBlock(lines[i])) {
          inner.push(lines[i]); // a lazy continuation of the quoted paragraph
        } else {
          break;
        }
        i += 1;
      }
      blocks.push({ type: "quote", children: parseBlocks(inner, depth + 1), start, end: i });
      continue;
    }
    if (ITEM.test(line)) {
      i = parseList(lines, i, depth, blocks);
      continue;
    }
    if (startsTable(lines, i)) {
      i = parseTable(lines, i, blocks);
      continue;
    }
    const text = [line.trim()];
    i += 1;
    while (i < lines.length && !isBlank(lines[i]) && !startsBlock(lines[i])
      && !startsTable(lines, i)) {
      text.push(lines[i].trim());
      i += 1;
    }
    blocks.push({ type: "para", text: text.join("\n"), start, end: i });
  }
  return blocks;
}

function markerKind(marker) {
  return /\d/.test(marker[0]) ? `1${marker.slice(-1)}` : marker;
}

/** One list from lines[i] on (items with the same kind of marker); returns the next line. */
function parseList(lines, i, depth, blocks) {
  const start = i;
  const first = ITEM.exec(lines[i]);
  const kind = markerKind(first[2]);
  const ordered = kind[0] === "1";
  const list = {
    type: "list",
    ordered,
    first: ordered ? Number.parseInt(first[2], 10) : 1,
    items: [],
    loose: false,
    start,
  };
  let blankBefore = false;
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (!m || markerKind(m[2]) !== kind || RULE.test(lines[i])) break;
    if (blankBefore) list.loose = true;
    const markerIndent = m[1].length;
    const spaces = m[3] ? indentWidth(m[3]) : 1;
    const contentIndent = markerIndent + m[2].length + (spaces > 4 ? 1 : spaces);
    // Lines indented past the marker belong to the item; a little less than the content's
    // indentation is accepted too, as answers often indent nested lists by two spaces.
    const belongs = Math.min(contentIndent, markerIndent + 2);
    const itemLines = [m[4] || ""];
    let lastBlank = false;
    i += 1;
    while (i < lines.length) {
      const l = lines[i];
      if (isBlank(l)) {
        itemLines.push("");
        lastBlank = true;
      } else if (indentWidth(l) >= belongs) {
        itemLines.push(dedent(l, contentIndent));
        lastBlank = false;
      } else if (!lastBlank && !startsBlock(l)) {
        itemLines.push(l); // a lazy continuation of the item's paragraph
      } else {
        break;
      }
      i += 1;
    }
    blankBefore = false;
    while (itemLines.length > 1 && isBlank(itemLines[itemLines.length - 1])) {
      itemLines.pop();
      blankBefore = true;
    }
    const children = parseBlocks(itemLines, depth + 1);
    if (children.length > 1 && itemLines.some(isBlank)) list.loose = true;
    list.items.push(children);
  }
  list.end = i;
  blocks.push(list);
  return i;
}

/** The cells of a table row: split at unescaped pipes, outer pipes dropped. */
function splitRow(line) {
  let text = line.trim();
  if (text.startsWith("|")) text = text.slice(1);
  if (text.endsWith("|") && !text.endsWith("\\|")) text = text.slice(0, -1);
  const cells = [];
  let cell = "";
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\\" && text[i + 1] === "|") {
      cell += "|";
      i += 1;
    } else if (text[i] === "|") {
      cells.push(cell.trim());
      cell = "";
    } else {
      cell += text[i];
    }
  }
  cells.push(cell.trim());
  return cells;
}

function parseTable(lines, i, blocks) {
  const start = i;
  const head = splitRow(lines[i]);
  const align = splitRow(lines[i + 1]).map((cell) => {
    const left = cell.startsWith(":");
    const right = cell.endsWith(":");
    if (left && right) return "center";
    if (right) return "right";
    return left ? "left" : "";
  });
  const rows = [];
  i += 2;
  while (i < lines.length && !isBlank(lines[i]) && lines[i].includes("|")
    && !startsBlock(lines[i])) {
    rows.push(splitRow(lines[i]));
    i += 1;
  }
  blocks.push({ type: "table", head, align, rows, start, end: i });
  return i;
}

// ---------------------------------------------------------------- rendering blocks

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

function renderBlock(block, tight) {
  switch (block.type) {
    case "para": {
      if (tight) {
        const span = el("span", "tight");
        renderInline(block.text, span, 0, false);
        return span;
      }
      const p = el("p");
      renderInline(block.text, p, 0, false);
      return p;
    }
    case "heading": {
      // The page's own title is the h1: an answer's headings start one level below it.
      const h = el(`h${Math.min(6, block.level + 1)}`);
      renderInline(block.text, h, 0, false);
      return h;
    }
    case "code": {
      const pre = el("pre");
      // Long lines scroll sideways: a scrollable region must be reachable by keyboard.
      pre.tabIndex = 0;
      const code = el("code");
      if (block.lang) {
        code.className = `language-${block.lang}`;
        pre.dataset.lang = block.lang;
      }
      code.textContent = block.text;
      pre.append(code);
      return pre;
    }
    case "rule":
      return el("hr");
    case "quote": {
      const quote = el("blockquote");
      for (const child of block.children) quote.append(renderBlock(child, false));
      return quote;
    }
    case "list": {
      const list = el(block.ordered ? "ol" : "ul");
      if (block.ordered && block.first !== 1) list.start = block.first;
      for (const children of block.items) {
        const li = el("li");
        for (const child of children) li.append(renderBlock(child, !block.loose));
        list.append(li);
      }
      return list;
    }
    case "table": {
      const wrap = el("div", "table-wrap");
      wrap.tabIndex = 0;
      wrap.setAttribute("role", "region");
      // Named by its columns, so that several tables are told apart.
      const columns = block.head.join(", ");
      wrap.setAttribute("aria-label", `Table: ${columns.length > 80 ? `${columns.slice(0, 79)}…` : columns}`);
      const table = el("table");
      const thead = el("thead");
      thead.append(renderRow(block.head, block.align, "th", block.head.length));
      table.append(thead);
      if (block.rows.length) {
        const tbody = el("tbody");
        for (const row of block.rows) {
          tbody.append(renderRow(row, block.align, "td", block.head.length));
        }
        table.append(tbody);
      }
      wrap.append(table);
      return wrap;
    }
    default:
      return document.createTextNode("");
  }
}

function renderRow(cells, align, tag, width) {
  const tr = el("tr");
  for (let c = 0; c < width; c++) {
    const cell = el(tag, align[c] ? `align-${align[c]}` : "");
    if (tag === "th") cell.scope = "col";
    renderInline(cells[c] || "", cell, 0, false);
    tr.append(cell);
  }
  return tr;
}

// ---------------------------------------------------------------- inline

const PUNCTUATION = /[!-/:-@[-`{-~]/;
const SPECIAL = /[\\`*_~[!<&\nhH]/g;
const AUTOLINK = /<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*)>/y;
const EMAIL_AUTOLINK = /<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>/y;
const BARE_URL = /https?:\/\/[^\s<>"]{1,2048}/iy;
const ENTITY = /&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});/y;

const NAMED_ENTITIES = {
  amp: "&", lt: "<", gt: ">", quot: "\"", apos: "'", nbsp: "\u00a0", copy: "©", reg: "®",
  trade: "™", hellip: "…", mdash: "—", ndash: "–", lsquo: "‘", rsquo: "’", ldquo: "“",
  rdquo: "”", laquo: "«", raquo: "»", middot: "·", bull: "•", times: "×", divide: "÷",
  deg: "°", plusmn: "±", larr: "←", rarr: "→", uarr: "↑", darr: "↓", hearts: "♥",
};

/** The character an entity reference stands for, or null when it is not one we know. */
function entity(body) {
  if (body[0] !== "#") {
    return Object.hasOwn(NAMED_ENTITIES, body) ? NAMED_ENTITIES[body] : null;
  }
  const code = body[1] === "x" || body[1] === "X"
    ? Number.parseInt(body.slice(2), 16)
    : Number.parseInt(body.slice(1), 10);
  const bad = !code || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff);
  return bad ? "\ufffd" : String.fromCodePoint(code);
}

function decodeEntities(text) {
  return text.replace(/&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});/g,
    (whole, body) => entity(body) ?? whole);
}

function isSpace(c) {
  return c === undefined || /\s/.test(c);
}

function isWordChar(c) {
  return c !== undefined && /[\p{L}\p{N}]/u.test(c);
}

function runLength(src, i, ch) {
  let j = i;
  while (src[j] === ch) j += 1;
  return j - i;
}

/**
 * Parses `src` as inline Markdown and appends the result to `parent`. `inLink` forbids nested
 * links (link text may hold emphasis and code, not another link).
 */
function renderInline(src, parent, depth, inLink) {
  if (depth > MAX_INLINE_DEPTH) {
    parent.append(document.createTextNode(src));
    return;
  }
  const n = src.length;
  // Positions that can never be a delimiter: escaped characters and code span contents.
  const inert = new Uint8Array(n + 1);
  const codeEnd = new Map();
  // Forward searches, cached per kind: the scan position only moves forward, and whether a
  // position qualifies depends on the position alone, so a search that came up empty (or
  // found `result`) answers every later search that starts before `result`.
  const caches = new Map();
  const search = (key, from, scan) => {
    const hit = caches.get(key);
    if (hit && from >= hit.from && (hit.result < 0 || from <= hit.result)) return hit.result;
    const result = scan(from);
    caches.set(key, { from, result });
    return result;
  };

  for (let i = 0; i < n;) {
    if (src[i] === "\\" && i + 1 < n && PUNCTUATION.test(src[i + 1])) {
      inert[i + 1] = 1;
      i += 2;
    } else if (src[i] === "`") {
      const run = runLength(src, i, "`");
      const close = run > MAX_CODE_RUN ? -1 : search(`code${run}`, i + run, (from) => {
        for (let p = src.indexOf("`", from); p >= 0; p = src.indexOf("`", p)) {
          const len = runLength(src, p, "`");
          if (len === run) return p;
          p += len;
        }
        return -1;
      });
      if (close >= 0) {
        codeEnd.set(i, close + run);
        inert.fill(1, i, close + run);
        i = close + run;
      } else {
        i += run;
      }
    } else {
      i += 1;
    }
  }

  const findCloser = (ch, run, from) => search(`${ch}${run}`, from, (start) => {
    for (let p = src.indexOf(ch, start); p >= 0; p = src.indexOf(ch, p)) {
      if (inert[p]) {
        p += 1;
        continue;
      }
      let len = 0;
      while (src[p + len] === ch && !inert[p + len]) len += 1;
      if (len === run && !isSpace(src[p - 1]) && !(ch === "_" && isWordChar(src[p + len]))) {
        return p;
      }
      p += len;
    }
    return -1;
  });

  const findBracket = (from) => search("]", from, (start) => {
    for (let p = src.indexOf("]", start); p >= 0; p = src.indexOf("]", p + 1)) {
      if (!inert[p]) return p;
    }
    return -1;
  });

  let text = "";
  const flush = () => {
    if (text) parent.append(document.createTextNode(text));
    text = "";
  };
  const link = (href, label, labelIsMarkdown) => {
    flush();
    const a = el("a");
    a.href = href;
    a.rel = "noopener noreferrer nofollow";
    a.target = "_blank";
    if (labelIsMarkdown) renderInline(label, a, depth + 1, true);
    else a.textContent = label;
    parent.append(a);
  };

  for (let i = 0; i < n;) {
    SPECIAL.lastIndex = i;
    const found = SPECIAL.exec(src);
    const next = found ? found.index : n;
    if (next > i) {
      text += src.slice(i, next);
      i = next;
      if (i >= n) break;
    }
    const c = src[i];

    if (c === "\\") {
      if (i + 1 < n && PUNCTUATION.test(src[i + 1])) {
        text += src[i + 1];
        i += 2;
      } else if (src[i + 1] === "\n") {
        flush();
        parent.append(el("br"));
        i += 2;
      } else {
        text += c;
        i += 1;
      }
      continue;
    }

    if (c === "`") {
      const run = runLength(src, i, "`");
      const end = codeEnd.get(i);
      if (end === undefined) {
        text += src.slice(i, i + run);
        i += run;
        continue;
      }
      let content = src.slice(i + run, end - run).replace(/\n/g, " ");
      if (content.length > 2 && content[0] === " " && content.endsWith(" ") && /[^ ]/.test(content)) {
        content = content.slice(1, -1);
      }
      flush();
      const code = el("code");
      code.textContent = content;
      parent.append(code);
      i = end;
      continue;
    }

    if (c === "*" || c === "_" || c === "~") {
      const run = runLength(src, i, c);
      const opens = (c === "~" ? run === 2 : run <= 3)
        && !isSpace(src[i + run])
        && !(c === "_" && isWordChar(src[i - 1]));
      const close = opens ? findCloser(c, run, i + run) : -1;
      if (close > i + run) {
        flush();
        let outer;
        let inner;
        if (c === "~") {
          outer = inner = el("del");
        } else if (run === 1) {
          outer = inner = el("em");
        } else if (run === 2) {
          outer = inner = el("strong");
        } else {
          outer = el("strong");
          inner = el("em");
          outer.append(inner);
        }
        renderInline(src.slice(i + run, close), inner, depth + 1, inLink);
        parent.append(outer);
        i = close + run;
      } else {
        text += src.slice(i, i + run);
        i += run;
      }
      continue;
    }

    if ((c === "[" || (c === "!" && src[i + 1] === "[")) && !inLink) {
      const image = c === "!";
      const open = image ? i + 1 : i;
      const parsed = parseLinkAt(src, open, findBracket, inert);
      if (parsed) {
        const href = safeHref(parsed.destination);
        if (href) {
          if (image) link(href, parsed.label || "image", false);
          else if (parsed.label.trim()) link(href, parsed.label, true);
          else link(href, href, false);
        } else {
          text += src.slice(i, parsed.end); // not a safe target: shown as written
        }
        i = parsed.end;
        continue;
      }
      text += c;
      i += 1;
      continue;
    }

    if (c === "<" && !inLink) {
      AUTOLINK.lastIndex = i;
      EMAIL_AUTOLINK.lastIndex = i;
      const url = AUTOLINK.exec(src);
      const email = url ? null : EMAIL_AUTOLINK.exec(src);
      const href = url ? safeHref(url[1]) : email ? safeHref(`mailto:${email[1]}`) : null;
      if (href) {
        link(href, url ? url[1] : email[1], false);
        i += (url || email)[0].length;
        continue;
      }
      text += c;
      i += 1;
      continue;
    }

    if ((c === "h" || c === "H") && !inLink && !isWordChar(src[i - 1])) {
      BARE_URL.lastIndex = i;
      const m = BARE_URL.exec(src);
      if (m) {
        let url = m[0];
        // Punctuation that ends the sentence is not part of the URL.
        for (;;) {
          const last = url[url.length - 1];
          if (/[.,:;!?'*_~]/.test(last)) {
            url = url.slice(0, -1);
          } else if (last === ")" && url.split("(").length < url.split(")").length) {
            url = url.slice(0, -1);
          } else {
            break;
          }
        }
        const href = safeHref(url);
        if (href) {
          link(href, url, false);
          i += url.length;
          continue;
        }
      }
      text += c;
      i += 1;
      continue;
    }

    if (c === "&") {
      ENTITY.lastIndex = i;
      const m = ENTITY.exec(src);
      const decoded = m ? entity(m[1]) : null;
      if (decoded !== null) {
        text += decoded;
        i += m[0].length;
      } else {
        text += c;
        i += 1;
      }
      continue;
    }

    if (c === "\n") {
      text = text.replace(/[ \t]+$/, "");
      flush();
      parent.append(el("br"));
      i += 1;
      continue;
    }

    text += c; // a special character that started nothing here ("h", "!", or in a link "[", "<")
    i += 1;
  }
  flush();
}

/**
 * `[label](destination "title")` starting at `open` (the "["): {label, destination, end} or
 * null. The label ends at the first "]" that is not escaped or in a code span.
 */
function parseLinkAt(src, open, findBracket, inert) {
  const close = findBracket(open + 1);
  if (close < 0 || src[close + 1] !== "(") return null;
  let p = close + 2;
  while (src[p] === " " || src[p] === "\t" || src[p] === "\n") p += 1;
  let destination;
  if (src[p] === "<") {
    const end = src.indexOf(">", p + 1);
    if (end < 0 || end - p > MAX_DESTINATION) return null;
    destination = src.slice(p + 1, end);
    if (/[\n<]/.test(destination)) return null;
    p = end + 1;
  } else {
    const begin = p;
    let parens = 0;
    while (p < src.length && p - begin <= MAX_DESTINATION) {
      const ch = src[p];
      if (ch === "\\" && PUNCTUATION.test(src[p + 1] || "")) {
        p += 2;
        continue;
      }
      if (/\s/.test(ch)) break;
      if (ch === "(") {
        parens += 1;
        if (parens > 32) return null;
      } else if (ch === ")") {
        if (parens === 0) break;
        parens -= 1;
      }
      p += 1;
    }
    if (p - begin > MAX_DESTINATION || parens !== 0) return null;
    destination = src.slice(begin, p).replace(/\\([!-/:-@[-`{-~])/g, "$1");
  }
  while (src[p] === " " || src[p] === "\t" || src[p] === "\n") p += 1;
  const quote = src[p];
  if (quote === "\"" || quote === "'") {
    const end = src.indexOf(quote, p + 1);
    if (end < 0 || end - p > 300) return null;
    p = end + 1;
    while (src[p] === " " || src[p] === "\t") p += 1;
  }
  if (src[p] !== ")" || inert[p]) return null;
  return { label: src.slice(open + 1, close), destination, end: p + 1 };
}
