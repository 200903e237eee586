"""The chat page in a real browser: headless Chromium (Debian's package) driven by Playwright.

Run by `tests/browser.rs`, which starts the Vertex AI emulator and ion-host and passes the
service's URL. Facts only the server side can see (what the emulator received, whether the
upstream call was cancelled) are asked of the Rust test over stdin/stdout: this script prints
`@@check {json}` and reads back `ok` or `fail: why`.

Exit status 0 when every scenario passed; any failure raises and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

# A quiet, offline Chromium: nothing but the page under test goes over the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Generous: the machine is shared and slow; nothing here asserts a duration.
WAIT_MS = 20_000

# Where screenshots go (set from the command line).
SHOTS = Path("target/screenshots")
ANSWER = ".message.assistant"
FIRST_QUESTION = "How do I start learning Rust? [[emulator:chunk-delay=400]]"
COPY_PREFIX = "ion-mentoring.transcript.v1."
LIST_KEY = "ion-mentoring.conversations.v1"
STORE_DOWN = {
    "error": "the conversation store is unavailable right now",
    "status_code": 503,
    "code": "store_unavailable",
}


def log(message: str) -> None:
    print(message, flush=True)


def check(kind: str, **facts) -> None:
    """Asks the Rust test to verify a server-side fact; raises if it does not hold."""
    print("@@check " + json.dumps({"kind": kind, **facts}, ensure_ascii=False), flush=True)
    answer = sys.stdin.readline().strip()
    if answer != "ok":
        raise AssertionError(f"server-side check {kind} failed: {answer or 'no answer'}")


class Watch:
    """Collects what a page did that it must not: failed scripts, CSP refusals, requests
    to any other origin."""

    def __init__(self, page: Page, base_url: str):
        self.problems: list[str] = []
        page.on("pageerror", lambda e: self.problems.append(f"script error: {e}"))
        page.on("console", self._console)
        page.on("request", lambda r: self._request(r.url, base_url))

    def _console(self, message) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.problems.append(f"CSP: {text}")

    def _request(self, url: str, base_url: str) -> None:
        if not (url.startswith(base_url + "/") or url == base_url):
            self.problems.append(f"request to another origin: {url}")

    def assert_clean(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def ask(page: Page, text: str) -> None:
    box = page.get_by_label("Your question")
    box.fill(text)
    box.press("Enter")


def last_answer(page: Page):
    return page.locator(ANSWER).last


def wait_complete(page: Page):
    """Waits for the newest answer to finish (its Copy button appears) and returns it."""
    answer = last_answer(page)
    expect(answer.get_by_role("button", name="Copy answer")).to_be_visible(timeout=WAIT_MS)
    return answer


def text_while_streaming(page: Page) -> str:
    """Waits until the answer being streamed shows text, and returns that text. One check in
    the page: the answer has text and is still streaming (the page removes the `streaming`
    class only when the stream has ended)."""
    handle = page.wait_for_function(
        """() => {
            const text = document.querySelector('.message.assistant.streaming .text');
            return text && text.textContent.trim() ? text.textContent : null;
        }""",
        timeout=WAIT_MS,
    )
    return handle.json_value()


def conversation_id(page: Page) -> str:
    """The conversation named in the address bar."""
    match = re.search(r"[?&]c=([0-9a-f]{32})$", page.url)
    assert match, f"no conversation in the address bar: {page.url}"
    return match.group(1)


def listed(page: Page) -> list[dict]:
    return json.loads(page.evaluate(f"localStorage.getItem('{LIST_KEY}')") or "[]")


def scenario_streams_in(page: Page) -> str:
    question = FIRST_QUESTION
    with page.expect_request("**/chat") as sent:
        ask(page, question)
    body = sent.value.post_data_json
    assert body["message"] == question and body["stream"] is True, body
    assert "history" not in body and "conversation_id" not in body, body
    assert "persona" not in body, body

    # Text is on screen while the answer is still streaming, and it keeps growing after that.
    first_seen = text_while_streaming(page)
    answer = wait_complete(page)
    final = answer.locator(".text").text_content()
    assert final.startswith(first_seen) and len(final) > len(first_seen), (
        first_seen,
        final,
    )
    assert "Vertex AI emulator" in final and "How do I start learning Rust?" in final, final
    expect(answer.locator(".who .persona")).to_have_text(re.compile(r"^(Lua|Elro|Riri|Nana)$"))
    expect(answer.locator(".who")).to_contain_text(re.compile(r"\w+-\w+-\w+"))
    answer.locator("summary").click()
    expect(answer.locator(".why p")).to_contain_text("resonance key")

    # The first answer named the conversation: the address bar and the list have it.
    expect(page).to_have_url(re.compile(r"/\?c=[0-9a-f]{32}$"))
    conv = conversation_id(page)
    assert [(e["id"], e["title"]) for e in listed(page)] == [(conv, question)], listed(page)
    item = page.locator(".conversation-item")
    expect(item).to_have_count(1)
    expect(item.get_by_role("link")).to_have_text(question)
    expect(item.get_by_role("link")).to_have_attribute("aria-current", "page")
    log("ok: the answer streams in, with the mentor and the resonance key; the conversation is named")
    return conv


def scenario_conversation(page: Page, conv: str) -> None:
    first_answer = page.evaluate(
        f"JSON.parse(localStorage.getItem('{COPY_PREFIX}{conv}')).turns[0].answer"
    )
    with page.expect_request("**/chat") as sent:
        ask(page, "그럼 어떤 책부터 읽을까요?")
    body = sent.value.post_data_json
    assert body["conversation_id"] == conv and "history" not in body, body
    answer = wait_complete(page)
    # The service sent the first question and answer from its store, then this one.
    expect(answer.locator(".text")).to_contain_text("turn 3]")
    expect(answer.locator(".text")).to_contain_text("그럼 어떤 책부터 읽을까요?")
    check(
        "history",
        message="그럼 어떤 책부터 읽을까요?",
        earlier=[FIRST_QUESTION, first_answer],
    )

    # A reload opens the same conversation from the service (this browser's copy is dropped
    # first, so it cannot come from there), and it carries on from there.
    page.evaluate(f"localStorage.removeItem('{COPY_PREFIX}{conv}')")
    with page.expect_response(f"**/conversations/{conv}") as loaded:
        page.reload()
    assert loaded.value.status == 200
    expect(page).to_have_url(re.compile(f"c={conv}$"))
    expect(page.locator(".message.user")).to_have_count(2)
    expect(page.locator(ANSWER)).to_have_count(2)
    expect(page.locator(".message.user").first).to_have_text(FIRST_QUESTION)
    expect(last_answer(page).locator(".text")).to_contain_text("turn 3]")
    with page.expect_request("**/chat") as sent:
        ask(page, "Thanks. One more tip?")
    body = sent.value.post_data_json
    assert body["conversation_id"] == conv and "history" not in body, body
    expect(wait_complete(page).locator(".text")).to_contain_text("turn 5]")
    log("ok: a second turn names the conversation; a reload loads it from the service")


def scenario_second_device(browser: Browser, base_url: str, conv: str) -> None:
    """Another browser (no shared storage) opening the link sees the transcript and goes on."""
    context = browser.new_context(viewport=PHONE)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    watch = Watch(page, base_url)
    page.goto(f"{base_url}/?c={conv}")
    expect(page.locator(".message.user")).to_have_count(3)
    expect(page.locator(".message.user").first).to_have_text(FIRST_QUESTION)
    expect(page.locator(ANSWER).nth(2).locator(".who .persona")).to_have_text(
        re.compile(r"^(Lua|Elro|Riri|Nana)$")
    )
    # It joins this browser's list, under its first question, and the drawer shows it.
    assert [(e["id"], e["title"]) for e in listed(page)] == [(conv, FIRST_QUESTION)]
    toggle = page.get_by_role("button", name="Conversations")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(page.locator(".sidebar")).to_be_visible()
    expect(page.get_by_role("link", name=FIRST_QUESTION)).to_be_focused()
    # A modal drawer: the chat behind it is inert, Tab moves within the list.
    assert page.evaluate("document.querySelector('.chat').inert")
    for _ in range(2):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('#sidebar') !== null")
    page.keyboard.press("Escape")
    expect(page.locator(".sidebar")).to_be_hidden()
    expect(toggle).to_be_focused()
    assert not page.evaluate("document.querySelector('.chat').inert")

    with page.expect_request("**/chat") as sent:
        ask(page, "From my phone: what next?")
    assert sent.value.post_data_json["conversation_id"] == conv
    expect(wait_complete(page).locator(".text")).to_contain_text("turn 7]")
    watch.assert_clean()
    context.close()
    log("ok: a second browser opening the link sees the transcript and carries on")


def scenario_mentor_by_hand(page: Page) -> None:
    page.get_by_label("Mentor", exact=True).select_option("Nana")
    question = "I feel stuck with my project."
    with page.expect_request("**/chat") as sent:
        ask(page, question)
    assert sent.value.post_data_json["persona"] == "Nana"
    answer = wait_complete(page)
    expect(answer.locator(".who .persona")).to_have_text("Nana")
    expect(answer.locator(".who")).to_contain_text("your choice")
    check("persona", message=question, persona="Nana")
    page.get_by_label("Mentor", exact=True).select_option("auto")
    log("ok: a mentor picked by hand answers")


BENIGN_MARKDOWN = (
    "Markdown, please:\n"
    "## Plan\n"
    "Some **bold**, *italic*, ~~old~~ and `inline <code>`, see [the docs](https://example.com/docs).\n"
    "\n"
    "- first\n"
    "- second\n"
    "  - nested\n"
    "\n"
    "1. one\n"
    "2. two\n"
    "\n"
    "> a quote\n"
    "\n"
    "| tool | use |\n"
    "|------|----:|\n"
    "| cargo | build |\n"
    "\n"
    "```rust\n"
    'fn main() { println!("<b>hi</b>"); }\n'
    "```\n"
    "The end."
)

# Each is echoed back by the emulator inside the answer, so it reaches the page as Gemini's
# Markdown would. `window.__pwned` is set by any of them that manages to run.
HOSTILE_HTML = (
    "Hostile HTML:\n"
    '<img src=x onerror="window.__pwned=1">\n'
    "<script>window.__pwned=2</script>\n"
    '<svg onload="window.__pwned=3"><circle r="9"/></svg>\n'
    '<iframe src="javascript:window.__pwned=4"></iframe>\n'
    '<a href="javascript:window.__pwned=5" onclick="window.__pwned=6">html link</a>\n'
    "<style>body{display:none}</style>\n"
    '**<b onmouseover="window.__pwned=7">bold html</b>**\n'
    "&lt;img src=z onerror=alert(1)&gt;\n"
    "```\n"
    '<img src=y onerror="window.__pwned=8">\n'
    "```"
)
HOSTILE_LINKS = (
    "Hostile links:\n"
    "[a](javascript:window.__pwned=11)\n"
    "[b](JaVaScRiPt:window.__pwned=12)\n"
    "[c]( javascript:window.__pwned=13)\n"
    "[d](&#106;avascript:window.__pwned=14)\n"
    "[e](&#x6A;&#x61;vascript:window.__pwned=15)\n"
    "[f](java\tscript:window.__pwned=16)\n"
    "[g](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)\n"
    "[h](vbscript:msgbox(1))\n"
    "[i](javascript&colon;window.__pwned=17)\n"
    "![j](javascript:window.__pwned=18)\n"
    "<javascript:window.__pwned=19>\n"
    "[k](//evil.example/x)\n"
    '[l](  JAVASCRIPT:window.__pwned=20 "title")\n'
    "[m](<javascript:window.__pwned=21>)\n"
    "[safe](https://example.com/ok) and <mailto:mentor@example.com>"
)
HOSTILE_SHAPES = (
    "Nested: ***a **b *c* d** e*** ~~**x** _y_~~ "
    + "*" * 200
    + "_" * 100
    + "[" * 100
    + "`" * 50
    + " &#0; &#xD800; &#99999999;\n"
    + "> " * 40
    + "deep\n"
    + "```\n"
    + "unterminated <b>fence</b>"
)


def assert_inert(page: Page, dialogs: list[str]) -> None:
    """No hostile script ran, and nothing in the conversation can run one or leave the page
    for a scheme other than http(s) or mailto."""
    assert page.evaluate("window.__pwned") is None, "a hostile script ran"
    assert not dialogs, f"a dialog opened: {dialogs}"
    bad = page.evaluate(
        r"""() => {
            const out = [];
            const banned = ['SCRIPT', 'IMG', 'SVG', 'IFRAME', 'STYLE', 'OBJECT', 'EMBED',
                            'FORM', 'INPUT', 'LINK', 'META', 'BASE', 'MATH'];
            for (const e of document.querySelectorAll('.conversation *')) {
                for (const a of e.attributes) {
                    const name = a.name.toLowerCase();
                    if (name.startsWith('on') || name === 'style' || name === 'src'
                        || name === 'srcdoc' || name === 'formaction') {
                        out.push(`${e.tagName} ${a.name}`);
                    }
                }
                if (banned.includes(e.tagName.toUpperCase())) out.push(e.tagName);
            }
            for (const a of document.querySelectorAll('.conversation a')) {
                const href = a.getAttribute('href') || '';
                if (!/^(https?:\/\/[^/]|mailto:)/i.test(href) || a.protocol === 'javascript:') {
                    out.push(`href ${href}`);
                }
                if (a.rel !== 'noopener noreferrer nofollow' || a.target !== '_blank') {
                    out.push(`rel/target of ${href}: ${a.rel} ${a.target}`);
                }
            }
            return out;
        }"""
    )
    assert not bad, f"unsafe nodes in the conversation: {bad}"


def scenario_markdown(page: Page) -> None:
    page.get_by_role("button", name="New conversation").click()
    box = page.get_by_label("Your question")
    box.fill(BENIGN_MARKDOWN)
    box.press("Enter")
    answer = wait_complete(page)
    text = answer.locator(".text")
    expect(text.locator("h3")).to_have_text("Plan")  # "##" is one level below the page's h1
    expect(text.locator("strong")).to_have_text("bold")
    expect(text.locator("em")).to_have_text("italic")
    expect(text.locator("del")).to_have_text("old")
    expect(text.locator("p code")).to_have_text("inline <code>")
    link = text.get_by_role("link", name="the docs")
    expect(link).to_have_attribute("href", "https://example.com/docs")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(link).to_have_attribute("target", "_blank")
    expect(text.locator(":scope > ul > li")).to_have_count(2)
    expect(text.locator(":scope > ul > li ul > li")).to_have_text(["nested"])
    expect(text.locator(":scope > ol > li")).to_have_text(["one", "two"])
    expect(text.locator("blockquote")).to_have_text("a quote")
    expect(text.locator("table th")).to_have_text(["tool", "use"])
    expect(text.locator("table td")).to_have_text(["cargo", "build"])
    expect(text.locator("pre code.language-rust")).to_have_text(
        'fn main() { println!("<b>hi</b>"); }'
    )
    expect(text.locator("b")).to_have_count(0)
    expect(text.locator("p").last).to_have_text("The end.")
    # The question is shown as typed, not rendered.
    expect(page.locator(".message.user").last).to_contain_text("Some **bold**, *italic*")
    page.screenshot(path=str(SHOTS / "chat-markdown.png"))
    # Copy gives the Markdown as the mentor wrote it.
    answer.get_by_role("button", name="Copy answer").click()
    expect(answer.locator(".copied")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("[Vertex AI emulator") and copied.endswith(BENIGN_MARKDOWN), copied
    log("ok: Markdown answers render as headings, emphasis, code, links, lists, quotes, tables")


def scenario_markdown_streaming(page: Page) -> None:
    lines = " ".join(f"line{i}" for i in range(60))
    ask(page, f"Stream a fence [[emulator:chunk-delay=250]]\n```text\n{lines}\n```\nAfter the fence.")
    # While it streams, the open fence is already code, and what follows has not come yet.
    seen = page.wait_for_function(
        """() => {
            const text = document.querySelector('.message.assistant.streaming .text');
            const code = text && text.querySelector('pre code');
            return code && code.textContent.includes('line') ? text.textContent : null;
        }""",
        timeout=WAIT_MS,
    ).json_value()
    assert "After the fence." not in seen, seen
    answer = wait_complete(page)
    expect(answer.locator("pre code.language-text")).to_have_text(lines)
    expect(answer.locator(".text > p").last).to_have_text("After the fence.")
    log("ok: a streamed answer renders as it arrives, an unterminated fence as code")


def scenario_hostile_markdown(page: Page, dialogs: list[str]) -> None:
    for question in [HOSTILE_HTML, HOSTILE_LINKS, HOSTILE_SHAPES]:
        box = page.get_by_label("Your question")
        box.fill(question)
        box.press("Enter")
        wait_complete(page)
        assert_inert(page, dialogs)
    answers = page.locator(ANSWER)
    html = answers.nth(-3).locator(".text")
    for shown in [
        '<img src=x onerror="window.__pwned=1">',
        "<script>window.__pwned=2</script>",
        '<svg onload="window.__pwned=3">',
        '<iframe src="javascript:window.__pwned=4"></iframe>',
        "<style>body{display:none}</style>",
        "<img src=z onerror=alert(1)>",
    ]:
        expect(html).to_contain_text(shown)
    expect(html.locator("strong")).to_have_text('<b onmouseover="window.__pwned=7">bold html</b>')
    expect(html.locator("pre code")).to_have_text('<img src=y onerror="window.__pwned=8">')

    links = answers.nth(-2).locator(".text")
    for shown in [
        "[a](javascript:window.__pwned=11)",
        "[b](JaVaScRiPt:window.__pwned=12)",
        "[c]( javascript:window.__pwned=13)",
        "[d](&#106;avascript:window.__pwned=14)",
        "[g](data:text/html;base64,",
        "[h](vbscript:msgbox(1))",
        "![j](javascript:window.__pwned=18)",
        "<javascript:window.__pwned=19>",
        "[k](//evil.example/x)",
        '[l](  JAVASCRIPT:window.__pwned=20 "title")',
    ]:
        expect(links).to_contain_text(shown)
    expect(links.locator("a")).to_have_count(2)
    expect(links.get_by_role("link", name="safe")).to_have_attribute(
        "href", "https://example.com/ok"
    )
    expect(links.get_by_role("link", name="mentor@example.com")).to_have_attribute(
        "href", "mailto:mentor@example.com"
    )

    shapes = answers.nth(-1).locator(".text")
    expect(shapes.locator("strong em").first).to_contain_text("a")
    expect(shapes).to_contain_text("*" * 200)
    expect(shapes).to_contain_text("deep")
    expect(shapes.locator("pre code").last).to_have_text("unterminated <b>fence</b>")
    # Clicking every link there is opens nothing that runs script.
    assert_inert(page, dialogs)
    log("ok: HTML, script, handlers and javascript:/data:/vbscript: links render as inert text")


def scenario_markdown_huge(page: Page) -> None:
    """The page's renderer on inputs far past any answer: linear time, inert output."""
    result = page.evaluate(
        r"""async () => {
            const { renderMarkdown } = await import('/ui/markdown.js');
            const n = 200000;
            const inputs = {
                stars: '*a '.repeat(n / 3), underscores: '_a '.repeat(n / 3),
                brackets: '['.repeat(n), links: '[x]('.repeat(n / 4),
                backticks: '` `` ``` '.repeat(n / 10), quotes: '>'.repeat(n) + ' deep',
                lists: '- '.repeat(n / 2) + 'x', nested: '  - a\n'.repeat(n / 7),
                html: '<img src=x onerror=alert(1)>'.repeat(n / 28),
                urls: 'https://[/'.repeat(n / 10), entities: '&#'.repeat(n / 2),
                emphasis: '**a *b '.repeat(n / 7), fence: '```\n' + 'x\n'.repeat(n / 2),
            };
            const out = {};
            for (const [name, text] of Object.entries(inputs)) {
                const box = document.createElement('div');
                const started = performance.now();
                renderMarkdown(box, text);
                const ms = performance.now() - started;
                const unsafe = [...box.querySelectorAll('*')].filter((e) =>
                    [...e.attributes].some((a) => a.name.startsWith('on'))
                    || ['IMG', 'SCRIPT'].includes(e.tagName)).length;
                out[name] = { ms, shown: box.textContent.length, unsafe };
            }
            // A long answer streamed in 400 deltas, re-rendered after each one.
            const answer = Array.from({ length: 400 }, (_, i) =>
                i % 40 === 0 ? `\n## Part ${i}\n\n` : `- item **${i}** with \`code\` and words\n`
            ).join('');
            const box = document.createElement('div');
            let state = [];
            const started = performance.now();
            for (let end = 80; end <= answer.length + 80; end += 80) {
                state = renderMarkdown(box, answer.slice(0, end), state);
            }
            out.streamed = { ms: performance.now() - started, shown: box.textContent.length,
                             unsafe: 0 };
            return out;
        }"""
    )
    for name, facts in result.items():
        assert facts["unsafe"] == 0, (name, facts)
        assert facts["shown"] > 0, (name, facts)
        assert facts["ms"] < 3000, f"{name} took {facts['ms']:.0f} ms"
    slowest = max(result, key=lambda k: result[k]["ms"])
    log(f"ok: 200 KB of hostile Markdown renders in linear time (slowest: {slowest}, "
        f"{result[slowest]['ms']:.0f} ms)")


def scenario_rate_limited(page: Page) -> None:
    with page.expect_response("**/chat") as replied:
        ask(page, "Quick question [[emulator:429]]")
    response = replied.value
    assert response.status == 429, response.status
    wait = int(response.headers["retry-after"])
    answer = last_answer(page)
    problem = answer.locator(".problem")
    expect(problem).to_contain_text("rate limiting")
    expect(problem.locator(".seconds")).to_have_text(re.compile(r"^\d+$"))
    shown = int(problem.locator(".seconds").inner_text())
    assert 0 < shown <= wait, (shown, wait)
    expect(problem.get_by_role("button", name="Retry")).to_be_disabled()
    expect(answer.locator(".text")).to_be_hidden()  # no made-up answer
    log(f"ok: an upstream 429 shows the wait ({wait} s) and a retry button")


def scenario_upstream_failure(page: Page) -> None:
    question = "Is the model there? [[emulator:503]]"
    with page.expect_response("**/chat") as replied:
        ask(page, question)
    status = replied.value.status
    assert status >= 500, status
    problem = last_answer(page).locator(".problem")
    expect(problem).to_contain_text("could not be produced")
    expect(problem).to_contain_text(f"HTTP {status}")
    retry = problem.get_by_role("button", name="Retry")
    expect(retry).to_be_enabled()
    # Retrying sends the same question again, in place of the failed answer.
    with page.expect_request("**/chat") as sent:
        retry.click()
    assert sent.value.post_data_json["message"] == question
    expect(last_answer(page).locator(".problem")).to_contain_text("could not be produced")
    expect(page.locator(".message.user", has_text="Is the model there?")).to_have_count(1)
    log(f"ok: an upstream failure ({status}) says what happened, and Retry asks again")


def scenario_stream_error(page: Page) -> None:
    ask(page, "Tell me about testing. [[emulator:stream-error]]")
    answer = last_answer(page)
    problem = answer.locator(".problem")
    expect(problem).to_contain_text("broke off", timeout=WAIT_MS)
    expect(problem.get_by_role("button", name="Retry")).to_be_enabled()
    expect(answer.get_by_role("button", name="Copy answer")).to_have_count(0)
    log("ok: an error event mid-answer is shown as such, with a retry button")


def scenario_content_blocked(page: Page) -> None:
    question = "Something the filters refuse [[emulator:safety]]"
    ask(page, question)
    problem = last_answer(page).locator(".problem")
    expect(problem).to_contain_text("content filters blocked", timeout=WAIT_MS)
    expect(page.get_by_label("Your question")).to_have_value(question)
    page.get_by_label("Your question").fill("")
    log("ok: blocked content is said plainly and the question is given back")


def scenario_stop(page: Page) -> None:
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator(ANSWER)).to_have_count(0)
    words = " ".join(f"word{i}" for i in range(120))
    question = f"Please explain slowly: {words} [[emulator:chunk-delay=700]]"
    ask(page, question)
    text_while_streaming(page)
    page.get_by_role("button", name="Stop").click()
    answer = last_answer(page)
    expect(answer).to_have_class(re.compile(r"\bstopped\b"))
    expect(answer.locator(".note")).to_contain_text("Stopped")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    stopped_text = answer.locator(".text").text_content()
    check("cancelled", message=question)
    # Nothing more arrived while the server side was checked.
    assert answer.locator(".text").text_content() == stopped_text
    assert "word119" not in stopped_text, "the whole answer arrived: nothing was stopped"
    conv = conversation_id(page)
    assert page.evaluate(f"localStorage.getItem('{COPY_PREFIX}{conv}')") is None
    kept = page.request.get(f"{page.url.split('/?')[0]}/conversations/{conv}").json()
    assert kept["turns"] == [], "a stopped answer is not kept in the conversation"
    log("ok: stopping mid-answer stops the stream and cancels the upstream call")


def scenario_keyboard(page: Page) -> None:
    box = page.get_by_label("Your question")
    asked = page.locator(".message.user").count()
    box.focus()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(box).to_have_value("first line\nsecond line")
    expect(page.locator(".message.user")).to_have_count(asked)
    with page.expect_request("**/chat") as sent:
        page.keyboard.press("Enter")
    assert sent.value.post_data_json["message"] == "first line\nsecond line"
    wait_complete(page)
    expect(box).to_be_focused()
    expect(box).to_have_value("")
    # Every control is reachable with Tab.
    page.locator("body").focus()
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
    for control in ["mentor", "new-conversation", "question", "send"]:
        assert control in reached, (control, reached)
    log("ok: Enter sends, Shift+Enter adds a line, every control is reachable by Tab")


def scenario_retried_upstream(page: Page) -> None:
    ask(page, "Once more, please. [[emulator:503x1]]")
    answer = wait_complete(page)
    expect(answer.locator(".note")).to_contain_text("needed 2 attempts")
    log("ok: an answer that took the service a retry says so")


def scenario_copy(page: Page) -> None:
    answer = last_answer(page)
    answer.get_by_role("button", name="Copy answer").click()
    expect(answer.locator(".copied")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("[Vertex AI emulator") and copied.endswith("[[emulator:503x1]]"), copied
    log("ok: an answer can be copied")


def scenario_list(page: Page, base_url: str, first: str) -> None:
    """Two conversations in the list: switch, rename, delete (also one already gone)."""
    second = conversation_id(page)  # the Markdown one, current
    assert second != first
    items = page.locator(".conversation-item")
    expect(items).to_have_count(2)
    # Newest first; the current one is marked.
    title = re.sub(r"\s+", " ", BENIGN_MARKDOWN)[:79] + "…"
    expect(items.first.get_by_role("link")).to_have_text(title)
    expect(items.first.get_by_role("link")).to_have_attribute("aria-current", "page")

    # Rename the first conversation (a title kept in this browser), then open it.
    items.nth(1).get_by_role("button", name=re.compile("^Rename")).click()
    title = page.get_by_label(re.compile("^New title for"))
    expect(title).to_be_focused()
    title.fill("  Learning   Rust  ")
    title.press("Enter")
    link = page.get_by_role("link", name="Learning Rust", exact=True)
    expect(link).to_be_focused()
    assert [e["title"] for e in listed(page) if e["id"] == first] == ["Learning Rust"]
    link.click()
    expect(page).to_have_url(re.compile(f"c={first}$"))
    expect(page.locator(".message.user")).to_have_count(6)
    expect(page.get_by_role("link", name="Learning Rust")).to_have_attribute("aria-current", "page")
    # Escape leaves a rename unchanged.
    page.get_by_role("button", name="Rename “Learning Rust”").click()
    page.get_by_label(re.compile("^New title for")).fill("Something else")
    page.get_by_label(re.compile("^New title for")).press("Escape")
    expect(page.get_by_role("link", name="Learning Rust")).to_be_visible()

    # Delete the Markdown conversation: asked first, then gone from the service and the list.
    page.get_by_role("button", name=re.compile("^Delete “Markdown")).click()
    with page.expect_response(f"**/conversations/{second}") as deleted:
        page.get_by_role("button", name="Yes, delete").click()
    assert deleted.value.request.method == "DELETE" and deleted.value.status == 204
    expect(items).to_have_count(1)
    expect(page.locator("#list-status")).to_contain_text("Deleted")
    assert page.request.get(f"{base_url}/conversations/{second}").status == 404
    assert page.evaluate(f"localStorage.getItem('{COPY_PREFIX}{second}')") is None

    # One deleted elsewhere: the service says 404, and it leaves this list as well.
    page.get_by_role("button", name="New conversation", exact=True).click()
    expect(page).to_have_url(f"{base_url}/")
    ask(page, "A short-lived conversation, please.")
    wait_complete(page)
    third = conversation_id(page)
    expect(items).to_have_count(2)
    assert page.request.delete(f"{base_url}/conversations/{third}").status == 204
    page.get_by_role("button", name=re.compile("^Delete “A short-lived")).click()
    with page.expect_response(f"**/conversations/{third}") as deleted:
        page.get_by_role("button", name="Yes, delete").click()
    assert deleted.value.status == 404
    expect(items).to_have_count(1)
    # It was on screen: the page starts afresh.
    expect(page).to_have_url(f"{base_url}/")
    expect(page.locator(ANSWER)).to_have_count(0)
    log("ok: the list switches, renames (kept in this browser) and deletes conversations")


def scenario_gone(page: Page, base_url: str) -> None:
    """A link to a conversation the service no longer has, and a link that names none."""
    gone = "0123456789abcdef" * 2
    with page.expect_response(f"**/conversations/{gone}") as loaded:
        page.goto(f"{base_url}/?c={gone}")
    assert loaded.value.status == 404
    notice = page.locator(".notice-box.gone")
    expect(notice).to_contain_text("no longer available: it expired or was deleted")
    expect(page).to_have_url(f"{base_url}/")
    expect(page.locator(".conversation-item")).to_have_count(1)  # the others are kept
    notice.get_by_role("button", name="Start a fresh conversation").click()
    expect(notice).to_have_count(0)
    expect(page.get_by_label("Your question")).to_be_focused()

    page.goto(f"{base_url}/?c=not-an-id")
    expect(page.locator(".notice-box.gone")).to_contain_text("does not name a conversation")
    expect(page).to_have_url(f"{base_url}/")

    # Asked in a conversation deleted meanwhile: said plainly, and the next question starts anew.
    page.goto(f"{base_url}/")
    ask(page, "Soon to be deleted.")
    wait_complete(page)
    doomed = conversation_id(page)
    assert page.request.delete(f"{base_url}/conversations/{doomed}").status == 204
    ask(page, "Are you still there?")
    problem = last_answer(page).locator(".problem")
    expect(problem).to_contain_text("no longer kept by the service")
    expect(page.get_by_label("Your question")).to_have_value("Are you still there?")
    with page.expect_request("**/chat") as sent:
        page.get_by_label("Your question").press("Enter")
    assert "conversation_id" not in sent.value.post_data_json
    wait_complete(page)
    expect(page.locator(".message.user")).to_have_count(1)
    assert conversation_id(page) != doomed

    # A full conversation (the service's 422 conversation_full): the same, and it stays listed.
    full = conversation_id(page)
    page.route(
        "**/chat",
        lambda route: route.fulfill(
            status=422,
            json={
                "error": "this conversation holds its most turns (200)",
                "status_code": 422,
                "code": "conversation_full",
                "turn_limit": 200,
            },
        ),
    )
    ask(page, "One more?")
    expect(last_answer(page).locator(".problem")).to_contain_text(
        "This conversation is full (200 exchanges)"
    )
    page.unroute("**/chat")
    expect(page.get_by_label("Your question")).to_have_value("One more?")
    with page.expect_request("**/chat") as sent:
        page.get_by_label("Your question").press("Enter")
    assert "conversation_id" not in sent.value.post_data_json
    wait_complete(page)
    assert conversation_id(page) != full
    assert full in [e["id"] for e in listed(page)]
    log("ok: an expired, deleted or full conversation is said plainly, with a way to start anew")


def scenario_store_unavailable(page: Page, base_url: str, conv: str) -> None:
    """The history service down (its 503 store_unavailable, as the service words it): the
    page shows its own copy and sends it as history; answers still come."""

    def chat(route) -> None:
        if "conversation_id" in (route.request.post_data_json or {}):
            route.fulfill(status=503, json=STORE_DOWN, headers={"retry-after": "5"})
        else:
            route.continue_()

    page.route("**/conversations/*", lambda r: r.fulfill(status=503, json=STORE_DOWN))
    page.route("**/chat", chat)
    page.goto(f"{base_url}/?c={conv}")
    notice = page.locator(".notice-box.offline")
    expect(notice).to_contain_text("history service is unavailable")
    expect(notice).to_contain_text("Answers still work")
    expect(page.locator(".message.user")).to_have_count(6)  # this browser's copy
    with page.expect_request("**/chat") as sent:
        ask(page, "Still there without history?")
    body = sent.value.post_data_json
    assert "conversation_id" not in body and len(body["history"]) == 12, body
    expect(wait_complete(page).locator(".text")).to_contain_text("turn 13]")
    expect(page).to_have_url(re.compile(f"c={conv}$"))

    # A conversation that was open when the store went away: the page notices on the next
    # question, says so once, and asks again with its copy.
    page.unroute("**/conversations/*")
    page.unroute("**/chat")
    page.goto(f"{base_url}/?c={conv}")
    expect(page.locator(".message.user")).to_have_count(6)  # the service's transcript
    page.route("**/chat", chat)
    with page.expect_request(lambda r: r.url.endswith("/chat") and "history" in r.post_data_json):
        ask(page, "And now?")
    expect(page.locator(".notice-box.offline")).to_have_count(1)
    expect(wait_complete(page).locator(".text")).to_contain_text("turn 13]")
    expect(page.locator(".message.user", has_text="And now?")).to_have_count(1)
    page.unroute("**/chat")
    log("ok: with the history service down, the page says so and answers go on with its copy")


def scenario_store_down(browser: Browser, down_url: str, transcript: list[dict]) -> None:
    """Against a service whose store is down: its real 503 and null conversation ids."""
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    watch = Watch(page, down_url)
    conv = "fedcba9876543210" * 2
    # This browser kept a copy of a conversation the service cannot read now.
    page.goto(f"{down_url}/")
    page.evaluate(
        "([key, list, copy]) => { localStorage.setItem(key, copy);"
        f" localStorage.setItem('{LIST_KEY}', list); }}",
        [
            COPY_PREFIX + conv,
            json.dumps([{"id": conv, "title": "Kept here", "updated": 1}]),
            json.dumps({"turns": transcript}),
        ],
    )
    with page.expect_response(f"**/conversations/{conv}") as loaded:
        page.goto(f"{down_url}/?c={conv}")
    assert loaded.value.status == 503 and loaded.value.json()["code"] == "store_unavailable"
    notice = page.locator(".notice-box.offline")
    expect(notice).to_contain_text("history service is unavailable")
    expect(notice).to_contain_text("Answers still work")
    expect(page.locator(".message.user")).to_have_count(len(transcript))
    with page.expect_request("**/chat") as sent:
        ask(page, "Is this still answered?")
    body = sent.value.post_data_json
    assert "conversation_id" not in body and len(body["history"]) == 2 * len(transcript), body
    expect(wait_complete(page).locator(".text")).to_contain_text(
        f"turn {2 * len(transcript) + 1}]"
    )

    # A new conversation: the service can name none (its meta says null), so the page keeps
    # it and sends it along with the next question.
    page.get_by_role("button", name="New conversation", exact=True).click()
    ask(page, "Starting while the store is down.")
    wait_complete(page)
    expect(page.locator(".notice-box.offline")).to_contain_text("kept in this browser only")
    expect(page).to_have_url(f"{down_url}/")
    with page.expect_request("**/chat") as sent:
        ask(page, "And a second question?")
    body = sent.value.post_data_json
    assert "conversation_id" not in body and len(body["history"]) == 2, body
    expect(wait_complete(page).locator(".text")).to_contain_text("turn 3]")
    page.reload()  # kept by this browser across a reload
    expect(page.locator(".message.user")).to_have_count(2)
    watch.assert_clean()
    context.close()
    log("ok: with the store really down, answers come and the page keeps the conversation")


def usage_of(page: Page, base_url: str, key: str | None = None) -> dict:
    """What the service itself counts for this caller (GET /usage counts no request)."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    reply = page.request.get(f"{base_url}/usage", headers=headers)
    assert reply.status == 200, (reply.status, reply.text())
    return reply.json()["usage"]


def charged(page: Page, base_url: str, before: int) -> dict:
    """/usage once the last answer's tokens are added to the day (just after its stream ends)."""
    deadline = time.monotonic() + 10
    while True:
        usage = usage_of(page, base_url)
        if usage["tokens_used"] > before or time.monotonic() > deadline:
            assert usage["tokens_used"] > before, f"no tokens were charged: {usage}"
            return usage
        time.sleep(0.1)


def seconds_in(countdown: str) -> int:
    """A countdown as the page writes it ("42 s", "3 min 05 s", "7 h 02 min 09 s")."""
    match = re.fullmatch(r"(?:(\d+) h )?(?:(\d+) min )?(\d+) s", countdown)
    assert match, f"not a countdown: {countdown!r}"
    h, m, s = (int(g or 0) for g in match.groups())
    return 3600 * h + 60 * m + s


def no_limits_shown(page: Page) -> None:
    expect(page.locator("#allowance")).to_be_empty()
    expect(page.locator("#access-status")).to_be_empty()
    expect(page.locator("#key-form")).to_be_hidden()
    expect(page.locator("#key-status")).to_be_hidden()


def scenario_allowance_and_minute_limit(browser: Browser, base_url: str, axe: str) -> None:
    """Two questions a minute and a daily budget for callers without a key: the page shows
    what is left as the service counts it, and the third question is refused, kept, and
    sendable again once the wait it was told is over."""
    # Seoul is 9 hours ahead of UTC, where the budget's day ends: it renews at 09:00 there.
    context = browser.new_context(viewport=DESKTOP, locale="en-GB", timezone_id="Asia/Seoul")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.clock.install()  # time runs as usual, and the test can move it forward
    watch = Watch(page, base_url)
    line = page.locator("#allowance")
    with page.expect_response("**/usage") as seen:
        page.goto(f"{base_url}/")
    fresh = seen.value.json()["usage"]
    assert fresh["requests_per_minute"] == 2 and fresh["requests_remaining"] == 2, fresh
    expect(line).to_have_text(
        re.compile(
            r"^Left this minute: 2 of 2 questions\. Left today: 1,000,000 of 1,000,000 tokens "
            r"\(renews (today|tomorrow) at 09:00 [^)]+\)\.$"
        )
    )
    expect(page.locator("#access-status")).to_be_empty()

    used = 0
    for n, question in enumerate(["Counting my questions, one.", "Counting my questions, two."]):
        with page.expect_response("**/chat") as replied:
            ask(page, question)
        head = replied.value.headers
        assert head["ratelimit-policy"] == '"requests";q=2;w=60, "tokens";q=1000000;w=86400', head
        wait_complete(page)
        counted = charged(page, base_url, used)
        used = counted["tokens_used"]
        # What the page says is what the service counts: requests, and tokens after the answer.
        expect(line).to_contain_text(f"Left this minute: {1 - n} of 2 questions.")
        left = counted["tokens_remaining"]
        expect(line).to_contain_text(f"Left today: {left:,} of 1,000,000 tokens")
    assert counted["requests_remaining"] == 0, counted

    third = "And a third one, within the same minute?"
    box = page.get_by_label("Your question")
    with page.expect_response("**/chat") as replied:
        ask(page, third)
    refused = replied.value
    assert refused.status == 429 and refused.json()["code"] == "rate_limited", refused.status
    retry_after = int(refused.headers["retry-after"])
    status = page.get_by_role("status").filter(has_text="Your question was not sent")
    expect(status).to_contain_text(
        "the service takes 2 questions a minute for your network address."
    )
    expect(status).to_contain_text("It is still in the box below.")
    countdown = status.locator(".countdown")
    shown = seconds_in(countdown.inner_text())
    assert 0 < shown <= retry_after, (shown, retry_after)
    # Nothing is lost and nothing is shown as asked; sending waits.
    expect(box).to_have_value(third)
    expect(page.locator(".message.user", has_text=third)).to_have_count(0)
    expect(page.locator(".message.user")).to_have_count(2)
    send = page.get_by_role("button", name="Send")
    expect(send).to_be_disabled()
    expect(line).to_contain_text("Left this minute: 0 of 2 questions.")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/chat") else None)
    box.press("Enter")
    page.wait_for_timeout(300)
    assert not sent, sent
    expect(box).to_have_value(third)
    page.screenshot(path=str(SHOTS / "chat-rate-limited.png"))
    accessibility(page, axe, "a question refused by the minute's limit")

    # The countdown is live; when it ends, sending is possible again, the question still there.
    # The wait is what is left of the service's minute, which can be a second or two when the
    # scenario runs at a minute's end: step by less than the wait, so the countdown is still up.
    step = min(3, shown - 1)
    if step > 0:
        page.clock.fast_forward(step * 1000)
        later = seconds_in(countdown.inner_text())
        assert later <= shown - step, (shown, step, later)
    page.clock.fast_forward(retry_after * 1000)
    expect(send).to_be_enabled()
    expect(page.locator("#access-status")).to_have_text(
        "The wait is over: you can send your question now."
    )
    expect(box).to_have_value(third)
    watch.assert_clean()
    context.close()
    log(f"ok: the allowance follows the service's count; a refused question waits {retry_after} s")


def scenario_daily_budget(browser: Browser, base_url: str) -> None:
    """A one-token daily budget for callers without a key: the first answer spends it, and the
    next question is refused until the budget renews, at UTC midnight, said in local time."""
    context = browser.new_context(viewport=PHONE, locale="en-GB", timezone_id="Asia/Seoul")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    watch = Watch(page, base_url)
    line = page.locator("#allowance")
    page.goto(f"{base_url}/")
    expect(line).to_have_text(
        re.compile(r"^Left today: 1 of 1 token \(renews (today|tomorrow) at 09:00 [^)]+\)\.$")
    )
    expect(line).not_to_contain_text("this minute")  # no such limit here
    ask(page, "Spend my budget, please.")
    wait_complete(page)
    expect(line).to_contain_text("Left today: 0 of 1 token ")

    question = "One more, over budget?"
    with page.expect_response("**/chat") as replied:
        ask(page, question)
    refused = replied.value
    body = refused.json()
    assert refused.status == 429 and body["code"] == "budget_exceeded", (refused.status, body)
    status = page.get_by_role("status").filter(has_text="Your question was not sent")
    expect(status).to_contain_text(
        "today's allowance of 1 token for your network address is used up."
    )
    expect(status).to_contain_text(re.compile(r"It renews (today|tomorrow) at 09:00 .*, in "))
    left = seconds_in(status.locator(".countdown").inner_text())
    assert 0 < body["retry_after"] - left <= 5 or left == body["retry_after"], (left, body)
    expect(page.get_by_label("Your question")).to_have_value(question)
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(page.locator(".message.user", has_text=question)).to_have_count(0)
    page.screenshot(path=str(SHOTS / "chat-budget-spent.png"))
    watch.assert_clean()
    context.close()
    log(f"ok: a spent daily budget is said, with its renewal in local time ({body['resets_at']})")


KEY_STORAGE = "ion-mentoring.api-key.v1"


def scenario_api_keys(browser: Browser, base_url: str, admin_token: str, axe: str) -> None:
    """A service that requires API keys: the page asks for one, refuses nothing silently, sends
    a pasted key as a bearer token, keeps it in this tab only, and can forget it."""
    admin = {"authorization": f"Bearer {admin_token}"}
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    watch = Watch(page, base_url)
    with page.expect_response("**/usage") as seen:
        page.goto(f"{base_url}/")
    assert seen.value.status == 401 and seen.value.json()["code"] == "invalid_api_key"
    status = page.locator("#access-status")
    asked = page.get_by_role("status").filter(has_text="This service needs an API key.")
    expect(asked).to_be_visible()
    key_box = page.get_by_label("API key", exact=True)
    expect(key_box).to_be_visible()
    expect(key_box).to_have_attribute("type", "password")
    expect(page.locator("#allowance")).to_be_empty()
    accessibility(page, axe, "an API key asked for")

    # A question without a key is not sent: it stays in the box, and the key box has focus.
    sent: list = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/chat") else None)
    question = "Hello, may I ask something?"
    ask(page, question)
    expect(key_box).to_be_focused()
    expect(page.get_by_label("Your question")).to_have_value(question)
    assert not sent and page.locator(".message.user").count() == 0

    # A key the service does not know is refused, and not kept.
    key_box.fill("ion_sk_0123456789ab_" + "0" * 32)
    with page.expect_response("**/usage") as checked:
        key_box.press("Enter")
    assert checked.value.status == 401
    expect(status).to_contain_text("The service refused this key")
    expect(key_box).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") is None

    # A key made with the admin API works once pasted; the page shows only its public part.
    made = page.request.post(
        f"{base_url}/admin/keys",
        headers=admin,
        data={"name": "Browser test", "requests_per_minute": 5, "daily_token_budget": 50000},
    )
    assert made.status == 201, made.text()
    key, prefix, key_id = made.json()["key"], made.json()["prefix"], made.json()["id"]
    key_box.fill(key)
    page.get_by_role("button", name="Use key").click()
    expect(status).to_have_text(
        "The service accepted the API key “Browser test”. You can send questions."
    )
    expect(key_box).to_be_hidden()
    key_status = page.locator("#key-status")
    expect(key_status).to_contain_text(f"Using the API key “Browser test” ({prefix}…).")
    assert key not in page.content()
    assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") == key
    assert key not in json.dumps(page.evaluate("({...localStorage})"))
    line = page.locator("#allowance")
    expect(line).to_contain_text("Left this minute: 5 of 5 questions.")
    expect(line).to_contain_text("Left today: 50,000 of 50,000 tokens")

    # The question still in the box goes out with the key, and the answer counts against it.
    with page.expect_request("**/chat") as chat:
        page.get_by_label("Your question").press("Enter")
    assert chat.value.all_headers().get("authorization") == f"Bearer {key}"
    wait_complete(page)
    expect(line).to_contain_text("Left this minute: 4 of 5 questions.")
    spent = usage_of(page, base_url, key)
    assert spent["requests_remaining"] == 4, spent

    # Kept in this tab across a reload; conversations are read without it.
    with page.expect_request("**/conversations/*") as loaded:
        with page.expect_response("**/usage") as again:
            page.reload()
    assert again.value.status == 200
    assert again.value.request.all_headers().get("authorization") == f"Bearer {key}"
    assert "authorization" not in loaded.value.all_headers()
    expect(key_status).to_be_visible()
    expect(key_box).to_be_hidden()

    # Revoked meanwhile: the question is refused and kept, the page forgets the key and asks.
    assert page.request.delete(f"{base_url}/admin/keys/{key_id}", headers=admin).status == 204
    after = "Still allowed after the revocation?"
    with page.expect_response("**/chat") as replied:
        ask(page, after)
    assert replied.value.status == 401
    expect(status).to_contain_text("refused the API key this page was using")
    expect(page.get_by_label("Your question")).to_have_value(after)
    expect(page.locator(".message.user", has_text=after)).to_have_count(0)
    expect(key_box).to_be_visible()
    expect(key_box).to_be_focused()
    expect(key_status).to_be_hidden()
    assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") is None

    # Another key, then forgotten: it leaves this tab, and the page asks for a key again.
    other = page.request.post(f"{base_url}/admin/keys", headers=admin, data={"name": "Spare"})
    assert other.status == 201
    key_box.fill(other.json()["key"])
    key_box.press("Enter")
    expect(key_status).to_contain_text("“Spare”")
    page.get_by_role("button", name="Forget key").click()
    expect(status).to_contain_text("This service needs an API key.")
    expect(key_status).to_be_hidden()
    expect(key_box).to_be_focused()
    assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") is None
    page.screenshot(path=str(SHOTS / "chat-api-key.png"))
    watch.assert_clean()
    context.close()
    log("ok: a service that needs keys asks for one; a pasted key works, a refused one is said")


def accessibility(page: Page, axe_source: str, label: str) -> None:
    page.evaluate(axe_source)
    result = page.evaluate(
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' '))})))"
    )
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not serious, f"axe-core ({label}): {json.dumps(serious, indent=1)}"
    minor = [f"{v['id']} ({v['impact']})" for v in result]
    log(f"ok: axe-core finds no serious violation ({label})" + (f"; minor: {minor}" if minor else ""))


def screenshots(
    browser: Browser, base_url: str, storage: dict, conv: str, out: Path, axe: str
) -> None:
    """The page with a conversation in it, at desktop and phone width, light and dark."""
    out.mkdir(parents=True, exist_ok=True)
    for name, viewport in [("desktop", DESKTOP), ("phone", PHONE)]:
        for scheme in ["light", "dark"]:
            context = browser.new_context(
                viewport=viewport, color_scheme=scheme, storage_state=storage
            )
            page = context.new_page()
            watch = Watch(page, base_url)
            page.goto(f"{base_url}/?c={conv}")
            expect(page.locator(ANSWER).first).to_be_visible()
            page.locator(".why summary").last.click()  # show why the last mentor answered
            page.get_by_label("Your question").focus()
            page.evaluate("document.querySelector('main').scrollTop = 1e9")
            width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"{name}: wider than the screen {width}"
            path = out / f"chat-{name}-{scheme}.png"
            page.screenshot(path=str(path))
            accessibility(page, axe, f"{name}, {scheme}")
            if name == "phone":
                page.get_by_role("button", name="Conversations").click()
                expect(page.locator(".sidebar")).to_be_visible()
                drawer = out / f"chat-{name}-list-{scheme}.png"
                page.screenshot(path=str(drawer))
                accessibility(page, axe, f"{name}, {scheme}, the list open")
                log(f"saved {drawer}")
            watch.assert_clean()
            context.close()
            log(f"saved {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--store-down-url", required=True, help="a service whose store is down")
    parser.add_argument("--limited-url", required=True, help="2 questions a minute without a key")
    parser.add_argument("--budget-url", required=True, help="a 1-token daily budget without a key")
    parser.add_argument("--keys-url", required=True, help="a service that requires API keys")
    parser.add_argument("--admin-token", required=True, help="the keys service's admin token")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--axe", required=True, help="path to axe-core's axe.min.js")
    parser.add_argument("--screenshots", required=True, type=Path)
    args = parser.parse_args()
    base_url = args.base_url.rstrip("/")
    axe = Path(args.axe).read_text()
    global SHOTS
    SHOTS = args.screenshots
    SHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport=DESKTOP)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        watch = Watch(page, base_url)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        with page.expect_response("**/usage") as usage:
            response = page.goto(base_url + "/")
        assert response is not None and response.status == 200
        # No limit applies here (all null): the page says nothing about limits or keys.
        assert usage.value.status == 200, usage.value.status
        assert all(
            usage.value.json()["usage"][field] is None
            for field in ["requests_per_minute", "requests_remaining", "daily_token_budget"]
        )
        no_limits_shown(page)
        assert response.headers["content-type"].startswith("text/html")
        assert "'unsafe-inline'" not in response.headers["content-security-policy"]
        expect(page).to_have_title("Ion Mentoring")
        expect(page.get_by_label("Your question")).to_be_focused()
        accessibility(page, axe, "empty page")

        first = scenario_streams_in(page)
        scenario_conversation(page, first)
        scenario_second_device(browser, base_url, first)
        page.reload()  # the turn asked on the other device is here too
        expect(page.locator(".message.user")).to_have_count(4)
        scenario_mentor_by_hand(page)
        scenario_retried_upstream(page)
        scenario_copy(page)
        scenario_markdown(page)
        scenario_markdown_streaming(page)
        scenario_hostile_markdown(page, dialogs)
        scenario_markdown_huge(page)
        accessibility(page, axe, "Markdown answers")
        page.reload()  # the answers render again from the service, as inert
        expect(page.locator(ANSWER)).to_have_count(5)
        assert_inert(page, dialogs)
        scenario_rate_limited(page)
        scenario_upstream_failure(page)
        scenario_stream_error(page)
        scenario_content_blocked(page)
        accessibility(page, axe, "conversation with errors")
        storage = context.storage_state()
        scenario_list(page, base_url, first)
        scenario_gone(page, base_url)
        scenario_store_unavailable(page, base_url, first)
        transcript = json.loads(page.evaluate(f"localStorage.getItem('{COPY_PREFIX}{first}')"))
        scenario_store_down(browser, args.store_down_url.rstrip("/"), transcript["turns"][:2])
        scenario_stop(page)
        scenario_keyboard(page)
        no_limits_shown(page)  # nor after all those answers
        watch.assert_clean()
        context.close()

        scenario_allowance_and_minute_limit(browser, args.limited_url.rstrip("/"), axe)
        scenario_daily_budget(browser, args.budget_url.rstrip("/"))
        scenario_api_keys(browser, args.keys_url.rstrip("/"), args.admin_token, axe)

        screenshots(browser, base_url, storage, first, args.screenshots, axe)
        browser.close()
    log("all browser scenarios passed")
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    status = main()
    log(f"browser scenarios took {time.monotonic() - started:.1f} s")
    sys.exit(status)
