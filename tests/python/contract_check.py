"""Checks the running service against its own /openapi.json, request by chosen request
(tests/api_contract.rs; the schemathesis run covers generated requests).

Usage: python contract_check.py BASE_URL RUNTIME [--unconfigured | --rate-limited]
  RUNTIME is ion-host or spin. The service must be wired to the Vertex AI emulator (the
  `[[emulator:FAULT]]` markers below make it fail on purpose); with --unconfigured it must have
  no project configured, and only the 503 `not_configured` answers are checked; with
  --rate-limited it is ion-host with `--rate-limit-per-minute 1`, and only its 429 is checked.

Each case sends one request, then runs schemathesis's conformance checks on the response
(status documented, content type documented, body and every event of a stream valid against
the schema, documented headers valid and required ones present), plus the case's own
expectation (status, error code, headers). At the end, every status the document lists for a
path must have been seen, except the few that only a failure of ion-host itself produces.
"""

import base64
import hashlib
import re
import sys
import threading
from pathlib import Path

import requests
import schemathesis
from schemathesis.specs.openapi import checks

CHECKS = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
# Statuses a well-behaved component cannot be made to answer from outside.
NOT_EXERCISED = {
    "500",  # internal_error: the component trapped
    "504 deadline_exceeded",  # ion-host's own deadline (tested in tests/host.rs)
    "400 body_unreadable",  # the client's body stream broke part-way
}

failures = []
seen = set()


def code_of(response):
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return body.get("code") if isinstance(body, dict) else None


def run(schema, base_url, runtime, name, path, method, status, code=None, body=None, headers=None, expect_header=None, events=None, path_parameters=None):
    operation = schema[path][method]
    kwargs = {}
    if path_parameters is not None:
        kwargs["path_parameters"] = path_parameters
    if body is not None:
        kwargs["body"] = body
        kwargs["media_type"] = "application/json"
    case = operation.Case(**kwargs)
    response = case.call(base_url=base_url, headers=headers or {}, allow_redirects=False)
    seen.add((path, method, str(response.status_code), code_of(response)))
    problems = []
    if response.status_code != status:
        problems.append(f"status {response.status_code}, expected {status}: {response.text[:300]}")
    if code is not None and code_of(response) != code:
        problems.append(f"code {code_of(response)!r}, expected {code!r}")
    names = {name.lower() for name in response.headers}
    for header in [expect_header] if expect_header else []:
        if header.lower() not in names:
            problems.append(f"no {header} header")
    if runtime == "ion-host" and "x-request-id" not in names:
        problems.append("no x-request-id header")
    if events is not None:
        names = [line[len("event: "):] for line in response.text.splitlines() if line.startswith("event: ")]
        datas = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
        got = names if names else datas[-1:]
        if events(got) is False:
            problems.append(f"unexpected events {got}")
    try:
        case.validate_response(response, checks=CHECKS)
    except Exception as e:  # schemathesis raises one error naming every failed check
        problems.append(str(e)[:3000])
    if problems:
        failures.append(f"{name} ({method} {path}):\n  " + "\n  ".join(problems))
        print(f"FAIL {name}")
    else:
        print(f"ok   {name}")


def overloaded(schema, base_url, runtime):
    """ion-host at its in-flight limit (the test starts it with --max-concurrent-requests 1)."""
    slow = threading.Thread(
        target=lambda: requests.post(f"{base_url}/chat", json={"message": "wait [[emulator:slow=3000]]"}, timeout=30)
    )
    slow.start()
    try:
        for _ in range(100):
            probe = requests.get(f"{base_url}/", timeout=10)
            if probe.status_code == 503:
                break
            threading.Event().wait(0.02)
        run(schema, base_url, runtime, "overloaded", "/", "GET", 503, "overloaded", expect_header="Retry-After")
        # /health has a reserve of its own: a full instance is not a dead one.
        run(schema, base_url, runtime, "health at the cap", "/health", "GET", 200)
    finally:
        slow.join()


def docs_policy(base_url):
    """/docs runs under a CSP naming its inline style and script by hash: they must match."""
    response = requests.get(f"{base_url}/docs", timeout=10)
    policy = response.headers.get("content-security-policy", "")
    for tag, directive in (("style", "style-src"), ("script", "script-src")):
        match = re.search(rf"<{tag}>(.*?)</{tag}>", response.text, re.S)
        digest = base64.b64encode(hashlib.sha256(match.group(1).encode()).digest()).decode()
        if f"{directive} 'sha256-{digest}'" not in policy:
            failures.append(f"/docs: the CSP does not allow the page's {tag}; set `{directive} 'sha256-{digest}'` in DOCS_CSP (src/api.rs)")
    for external in ('src="http', 'href="http', 'src="//', 'href="//'):
        if external in response.text:
            failures.append(f"/docs loads something from elsewhere ({external}...)")
    print("ok   /docs CSP" if "/docs" not in " ".join(failures) else "FAIL /docs CSP")


def rate_limited(base_url, runtime):
    """ion-host's per-client limit: one request a minute, then 429 `rate_limited`."""
    # Read from the checkout, not the service: fetching it would spend the one request.
    schema = schemathesis.openapi.from_path(str(Path(__file__).parents[2] / "src/openapi.json"))
    run(schema, base_url, runtime, "first request", "/", "GET", 200)
    run(schema, base_url, runtime, "rate limited", "/", "GET", 429, "rate_limited", expect_header="RateLimit-Policy")
    run(schema, base_url, runtime, "chat rate limited", "/chat", "POST", 429, "rate_limited", {"message": "hi"}, expect_header="Retry-After")
    run(schema, base_url, runtime, "health is never limited", "/health", "GET", 200)


def main(base_url, runtime, unconfigured):
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    r = lambda *a, **k: run(schema, base_url, runtime, *a, **k)
    chat, v1 = "/chat", "/v1/chat/completions"
    ask = lambda text, **extra: {"message": text, **extra}
    complete = lambda text, model="ion-auto", **extra: {"model": model, "messages": [{"role": "user", "content": text}], **extra}

    if unconfigured:
        r("chat: not configured", chat, "POST", 503, "not_configured", ask("hi"))
        r("completion: not configured", v1, "POST", 503, "not_configured", complete("hi"))
        return

    for path in ["/", "/health", "/docs", "/openapi.json", "/v1/models"]:
        r(f"GET {path}", path, "GET", 200)
        r(f"HEAD {path}", path, "HEAD", 200)
        r(f"OPTIONS {path}", path, "OPTIONS", 204, expect_header="Allow")
        r(f"OPTIONS {path} preflight, origin not allowed", path, "OPTIONS", 403, "cors_origin_not_allowed",
          headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"})
        if path != "/":
            r(f"GET {path}/ redirects", path + "/", "GET", 307, expect_header="Location")
            r(f"HEAD {path}/ redirects", path + "/", "HEAD", 307, expect_header="Location")
    for path in [chat, v1]:
        r(f"OPTIONS {path}", path, "OPTIONS", 204, expect_header="Allow")
        r(f"OPTIONS {path} preflight, origin not allowed", path, "OPTIONS", 403, "cors_origin_not_allowed",
          headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
        r(f"POST {path}/ redirects", path + "/", "POST", 307, body=ask("hi"), expect_header="Location")

    done = lambda names: names[:1] == ["meta"] and "delta" in names and names[-1] == "done"
    r("chat", chat, "POST", 200, body=ask("어떻게 해야 하나요?", user_id="u-1"))
    r("chat: conversation and options", chat, "POST", 200, body=ask(
        "And then?", persona="nana", thinking_level="minimal", max_output_tokens=4096,
        history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]))
    r("chat: stream", chat, "POST", 200, body=ask("tell me more", stream=True), events=done)
    r("chat: stream by Accept", chat, "POST", 200, body=ask("tell me more"), headers={"Accept": "text/event-stream"}, events=done)
    r("chat: stream that fails after it started", chat, "POST", 200,
      body=ask("go [[emulator:stream-error]]", stream=True), events=lambda names: names[0] == "meta" and names[-1] == "error")
    r("chat: truncated", chat, "POST", 200, body=ask("a long answer, please", thinking_level="minimal", max_output_tokens=20))
    r("chat: content blocked", chat, "POST", 400, "content_blocked", ask("x [[emulator:safety]]"))
    r("chat: too large", chat, "POST", 413, "payload_too_large", ask("가" * 50_000))
    r("chat: not JSON", chat, "POST", 415, "unsupported_media_type", ask("hi"), headers={"Content-Type": "text/plain"})
    r("chat: invalid", chat, "POST", 422, body=ask("a\u0001b"))
    r("chat: rate limited", chat, "POST", 429, "upstream_rate_limited", ask("hi [[emulator:429]]"), expect_header="Retry-After")
    r("chat: upstream failed", chat, "POST", 502, "upstream_error", ask("hi [[emulator:500]]"))
    r("chat: retired model", chat, "POST", 502, "upstream_model_not_found", ask("hi [[emulator:404]]"))
    r("chat: empty answer", chat, "POST", 502, "upstream_empty_answer", ask("hi", thinking_level="high", max_output_tokens=10))
    r("chat: upstream too slow", chat, "POST", 504, "upstream_timeout", ask("hi [[emulator:slow]]"))

    # Server-side conversations: one made through /chat, read back, continued and deleted.
    conv = "/conversations/{conversation_id}"
    made = requests.post(f"{base_url}{chat}", json=ask("A conversation to read back"), timeout=30)
    cid = made.json()["conversation_id"]
    unknown, malformed = "0" * 32, "not-an-id"
    at = lambda id: {"conversation_id": id}
    r("chat: a conversation continued", chat, "POST", 200, body=ask("And next?", conversation_id=cid))
    r("chat: an unknown conversation", chat, "POST", 404, "conversation_not_found", ask("hi", conversation_id=unknown))
    r("conversation", conv, "GET", 200, path_parameters=at(cid))
    r("conversation: headers", conv, "HEAD", 200, path_parameters=at(cid))
    r("conversation: unknown", conv, "GET", 404, "conversation_not_found", path_parameters=at(unknown))
    r("conversation: unknown, headers", conv, "HEAD", 404, path_parameters=at(unknown))
    r("conversation: malformed id", conv, "GET", 422, path_parameters=at(malformed))
    r("conversation: malformed id, headers", conv, "HEAD", 422, path_parameters=at(malformed))
    r("OPTIONS conversation", conv, "OPTIONS", 204, expect_header="Allow", path_parameters=at(cid))
    r("OPTIONS conversation preflight, origin not allowed", conv, "OPTIONS", 403, "cors_origin_not_allowed",
      headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "DELETE"}, path_parameters=at(cid))
    r("conversation: deleted", conv, "DELETE", 204, path_parameters=at(cid))
    r("conversation: deleted again", conv, "DELETE", 404, "conversation_not_found", path_parameters=at(cid))
    r("conversation: delete a malformed id", conv, "DELETE", 422, path_parameters=at(malformed))

    chunks = lambda datas: datas == ["[DONE]"]
    r("completion", v1, "POST", 200, body=complete("How do I start?", max_tokens=4096, stop=["END"], temperature=0.5))
    r("completion: system message and persona model", v1, "POST", 200, body={
        "model": "ion-riri", "reasoning_effort": "none",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    r("completion: stream with usage", v1, "POST", 200, body=complete("hi", stream=True, stream_options={"include_usage": True}), events=chunks)
    r("completion: stream that fails after it started", v1, "POST", 200,
      body=complete("go [[emulator:stream-error]]", stream=True), events=lambda datas: datas != ["[DONE]"])
    r("completion: unknown model", v1, "POST", 404, "model_not_found", complete("hi", model="gpt-4o"))
    r("completion: content blocked", v1, "POST", 400, "content_blocked", complete("x [[emulator:safety]]"))
    r("completion: too large", v1, "POST", 413, "payload_too_large", complete("가" * 50_000))
    r("completion: not JSON", v1, "POST", 415, "unsupported_media_type", complete("hi"), headers={"Content-Type": "text/plain"})
    r("completion: invalid", v1, "POST", 422, body=complete("hi", n=2))
    r("completion: rate limited", v1, "POST", 429, "upstream_rate_limited", complete("hi [[emulator:429]]"), expect_header="Retry-After")
    r("completion: upstream failed", v1, "POST", 502, "upstream_error", complete("hi [[emulator:500]]"))
    r("completion: upstream too slow", v1, "POST", 504, "upstream_timeout", complete("hi [[emulator:slow]]"))

    if runtime == "ion-host":
        overloaded(schema, base_url, runtime)
    docs_policy(base_url)

    # Every documented status was seen (for the component's own answers).
    spec = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    statuses_seen = {(p, m, s) for p, m, s, _ in seen}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    continue  # ion-host's own answers (components/responses), on every path
                if status in NOT_EXERCISED or (path, method.upper(), status) in statuses_seen:
                    continue
                if status == "503":
                    continue  # not_configured: seen by the --unconfigured run
                failures.append(f"{method.upper()} {path}: documented status {status} never seen")
    for path, method, status, code in seen:
        if f"{status} {code}" in NOT_EXERCISED:
            failures.append(f"{method} {path}: {status} {code} seen; update NOT_EXERCISED")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--rate-limited" in args:
        rate_limited(args[0].rstrip("/"), args[1])
    else:
        main(args[0].rstrip("/"), args[1], "--unconfigured" in args)
    if failures:
        print(f"\n{len(failures)} contract failure(s):\n")
        print("\n\n".join(failures))
        sys.exit(1)
    print("\nthe service answers as its /openapi.json says")
