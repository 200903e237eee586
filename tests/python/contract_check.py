"""Checks the running service against its own /openapi.json, request by chosen request
(tests/api_contract.rs; the schemathesis run covers generated requests).

Usage: python contract_check.py BASE_URL RUNTIME [--unconfigured | --rate-limited]
                                                [--keys KEYS_URL ADMIN_TOKEN]
  RUNTIME is ion-host or spin. The service must be wired to the Vertex AI emulator (the
  `[[emulator:FAULT]]` markers below make it fail on purpose), with the default access
  settings (`auth_mode` none, no admin token, no limits); with --unconfigured it must have
  no project configured, and only the 503 `not_configured` answers are checked; with
  --rate-limited it is ion-host with `--rate-limit-per-minute 1`, and only its 429 is checked.
  --keys names a second service, wired to the same emulator, with `auth_mode`
  keys_or_anonymous, the admin token ADMIN_TOKEN and ANONYMOUS_LIMITS (below): the admin API,
  `/usage`, API keys and the limits are checked there, and count towards the statuses seen.

Each case sends one request, then runs schemathesis's conformance checks on the response
(status documented, content type documented, body and every event of a stream valid against
the schema, documented headers valid and required ones present), plus the case's own
expectation (status, error code, headers). At the end, every status the document lists for a
path must have been seen (on the service or the --keys one), except the few that only a
failure of ion-host itself produces.
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

# The anonymous limits the --keys service has (`anonymous_requests_per_minute`,
# `anonymous_daily_tokens`): tests/api_contract.rs sets the same.
ANONYMOUS_LIMITS = (2, 1_000_000)

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


def documented_codes(response):
    """The codes a documented response names (`allOf` [Error, {code: {enum}}]), if it does."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    for part in schema.get("allOf", []):
        codes = part.get("properties", {}).get("code", {}).get("enum")
        if codes:
            return codes
    return []


def run(schema, base_url, runtime, name, path, method, status, code=None, body=None, headers=None, expect_header=None, events=None, path_parameters=None, expect=None):
    """One request, checked against the document and the case's expectations; `expect` takes
    the response and returns what is wrong with it, if anything. Returns the response."""
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
    if expect is not None:
        problem = expect(response)
        if problem:
            problems.append(problem)
    try:
        case.validate_response(response, checks=CHECKS)
    except (Exception, BaseExceptionGroup) as e:  # schemathesis raises one group naming every failed check
        problems.append(str(e)[:3000])
    if problems:
        failures.append(f"{name} ({method} {path}):\n  " + "\n  ".join(problems))
        print(f"FAIL {name}")
    else:
        print(f"ok   {name}")
    return response


def header_has(name, *parts):
    """An `expect`: the response has the header, and its value contains each part. (The
    response's headers have lower-case names and lists of values.)"""
    def check(response):
        values = response.headers.get(name.lower())
        if not values:
            return f"no {name} header"
        value = ", ".join(values)
        missing = [part for part in parts if part not in value]
        return f"{name}: {value!r} lacks {missing}" if missing else None
    return check


def body_is(what, predicate):
    """An `expect`: the JSON body is what `predicate` accepts."""
    def check(response):
        try:
            body = response.json()
            if predicate(body):
                return None
        except (ValueError, KeyError, TypeError, IndexError):
            pass
        return f"not {what}: {response.text[:300]}"
    return check


def both(*checks):
    return lambda response: "; ".join(filter(None, (check(response) for check in checks))) or None


def openai_type(kind):
    return body_is(f"OpenAI's error type {kind}", lambda b: b["error"]["type"] == kind)


def no_limit_headers(response):
    names = {name.lower() for name in response.headers}
    return "RateLimit headers, though nothing is limited" if names & {"ratelimit", "ratelimit-policy"} else None


def access_off(r, ask):
    """The default access settings: `auth_mode` none (Authorization is not read), no limits, and
    no admin API (its paths answer like unknown ones, except OPTIONS and the trailing slash)."""
    stranger = {"Authorization": "Bearer ion_sk_000000000000_" + "0" * 32}
    r("usage: anonymous, nothing limited", "/usage", "GET", 200, expect=body_is(
        "anonymous without limits", lambda b: b["caller"] == "anonymous" and b["key"] is None
        and b["usage"]["requests_per_minute"] is None and b["usage"]["daily_token_budget"] is None))
    r("usage: a key is not read with auth_mode none", "/usage", "GET", 200, headers=stranger,
      expect=body_is("anonymous", lambda b: b["caller"] == "anonymous"))
    r("chat: a key is not read with auth_mode none", "/chat", "POST", 200, body=ask("hi"), headers=stranger,
      expect=no_limit_headers)
    keys, key, some = "/admin/keys", "/admin/keys/{key_id}", {"key_id": "0" * 12}
    token = {"Authorization": "Bearer " + "0" * 32}
    r("admin API off: list", keys, "GET", 404, "not_found", headers=token)
    r("admin API off: issue", keys, "POST", 404, "not_found", {"name": "x"}, headers=token)
    r("admin API off: show", key, "GET", 404, "not_found", headers=token, path_parameters=some)
    r("admin API off: revoke", key, "DELETE", 404, "not_found", headers=token, path_parameters=some)
    r("OPTIONS /admin/keys", keys, "OPTIONS", 204, expect=header_has("Allow", "GET", "POST", "OPTIONS"))
    r("OPTIONS /admin/keys preflight, origin not allowed", keys, "OPTIONS", 403, "cors_origin_not_allowed",
      headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
    r("OPTIONS /admin/keys/{key_id}", key, "OPTIONS", 204, path_parameters=some,
      expect=header_has("Allow", "GET", "DELETE", "OPTIONS"))
    r("OPTIONS /admin/keys/{key_id} preflight, origin not allowed", key, "OPTIONS", 403, "cors_origin_not_allowed",
      headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "DELETE"}, path_parameters=some)
    r("OPTIONS /admin/keys/{key_id}, an id that cannot exist", key, "OPTIONS", 404, "not_found",
      path_parameters={"key_id": "not-an-id"})
    model = "/v1/models/{model}"
    r("HEAD /v1/models/{model}", model, "HEAD", 200, path_parameters={"model": "ion-auto"})
    r("HEAD /v1/models/{model}, unknown", model, "HEAD", 404, path_parameters={"model": "gpt-4o"})
    r("OPTIONS /v1/models/{model}", model, "OPTIONS", 204, path_parameters={"model": "ion-auto"},
      expect=header_has("Allow", "GET", "HEAD", "OPTIONS"))
    r("OPTIONS /v1/models/{model} preflight, origin not allowed", model, "OPTIONS", 403, "cors_origin_not_allowed",
      headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"},
      path_parameters={"model": "ion-auto"})
    r("GET /admin/keys/ redirects", keys + "/", "GET", 307, expect_header="Location")
    r("POST /admin/keys/ redirects", keys + "/", "POST", 307, body={"name": "x"}, expect_header="Location")


def access(base_url, runtime, admin_token):
    """The --keys service: `auth_mode` keys_or_anonymous, the admin API on, ANONYMOUS_LIMITS.
    Every anonymous chat here counts against the anonymous limit (all come from one address),
    so there are exactly as many as the checks of that limit expect."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    r = lambda *a, **k: run(schema, base_url, runtime, *a, **k)
    chat, v1, usage, keys, key = "/chat", "/v1/chat/completions", "/usage", "/admin/keys", "/admin/keys/{key_id}"
    ask = lambda text, **extra: {"message": text, **extra}
    complete = lambda text: {"model": "ion-auto", "messages": [{"role": "user", "content": text}]}
    admin = {"Authorization": f"Bearer {admin_token}"}
    bearer = lambda secret: {"Authorization": f"Bearer {secret}"}
    at = lambda id: {"key_id": id}
    wrong = "ion_sk_000000000000_" + "0" * 32
    anonymous_rpm, anonymous_tokens = ANONYMOUS_LIMITS

    # The admin API: nothing without its token.
    for name, headers in [("no token", {}), ("another token", {"Authorization": "Bearer " + "0" * 32}),
                          ("another scheme", {"Authorization": f"Basic {admin_token}"}), ("an API key", bearer(wrong))]:
        r(f"admin: issue with {name}", keys, "POST", 401, "invalid_admin_token", {"name": "x"}, headers=headers,
          expect_header="WWW-Authenticate")
    r("admin: list without the token", keys, "GET", 401, "invalid_admin_token", expect_header="WWW-Authenticate")
    r("admin: show without the token", key, "GET", 401, "invalid_admin_token", path_parameters=at("0" * 12))
    r("admin: revoke without the token", key, "DELETE", 401, "invalid_admin_token", path_parameters=at("0" * 12))

    def issue(name, body, limits):
        response = r(f"admin: issue a key ({name})", keys, "POST", 201, body=body, headers=admin, expect=body_is(
            f"a key with the limits {limits}", lambda b: re.fullmatch(r"ion_sk_[0-9a-f]{12}_[0-9a-f]{32}", b["key"])
            and b["key"].startswith(b["prefix"] + "_") and b["name"] == body["name"]
            and (b["requests_per_minute"], b["daily_token_budget"]) == limits))
        return response.json() if response.status_code == 201 else None

    # The defaults are spin.toml's `key_requests_per_minute` and `key_daily_tokens`.
    plain = issue("the default limits", {"name": "contract check"}, (60, 1_000_000))
    one = issue("one request a minute", {"name": "one a minute", "requests_per_minute": 1, "daily_token_budget": 0}, (1, 0))
    tiny = issue("a budget of one token", {"name": "tiny budget", "requests_per_minute": None, "daily_token_budget": 1}, (60, 1))
    if None in (plain, one, tiny):
        failures.append("the access checks stopped: no keys to check with")
        return
    r("admin: issue with an unknown field", keys, "POST", 422, body={"name": "x", "scopes": ["all"]}, headers=admin)
    r("admin: issue with a blank name", keys, "POST", 422, body={"name": " \t "}, headers=admin)
    r("admin: issue, not JSON", keys, "POST", 415, "unsupported_media_type", {"name": "x"},
      headers={**admin, "Content-Type": "text/plain"})
    r("admin: issue, too large", keys, "POST", 413, "payload_too_large", {"name": "가" * 50_000}, headers=admin)
    ids = {plain["id"], one["id"], tiny["id"]}
    r("admin: list", keys, "GET", 200, headers=admin, expect=body_is(
        "every key, none with its secret", lambda b: ids <= {k["id"] for k in b["keys"]}
        and not any("key" in k for k in b["keys"])))
    r("admin: show", key, "GET", 200, headers=admin, path_parameters=at(plain["id"]), expect=body_is(
        "the key, unused", lambda b: b["id"] == plain["id"] and "key" not in b
        and b["usage"]["requests_remaining"] == 60 and b["usage"]["tokens_used"] == 0))
    r("admin: show an unknown key", key, "GET", 404, "key_not_found", headers=admin, path_parameters=at("0" * 12))
    r("admin: show a malformed id", key, "GET", 404, "key_not_found", headers=admin, path_parameters=at("not-an-id"))
    r("admin: revoke an unknown key", key, "DELETE", 404, "key_not_found", headers=admin, path_parameters=at("0" * 12))

    # /usage: who the caller is and where it stands (counting nothing).
    r("usage: anonymous", usage, "GET", 200, expect=body_is(
        "anonymous with the anonymous limits", lambda b: b["caller"] == "anonymous" and b["key"] is None
        and b["usage"]["requests_per_minute"] == anonymous_rpm and b["usage"]["requests_remaining"] == anonymous_rpm
        and b["usage"]["daily_token_budget"] == anonymous_tokens))
    r("usage: with a key", usage, "GET", 200, headers=bearer(plain["key"]), expect=body_is(
        "the key's", lambda b: b["caller"] == "key" and b["key"] == {"id": plain["id"], "name": "contract check"}
        and b["usage"]["requests_per_minute"] == 60 and b["usage"]["tokens_remaining"] == 1_000_000))
    r("usage: with a key, headers", usage, "HEAD", 200, headers=bearer(plain["key"]))
    r("usage: a wrong key", usage, "GET", 401, "invalid_api_key", headers=bearer(wrong), expect_header="WWW-Authenticate")
    r("usage: a wrong key, headers", usage, "HEAD", 401, headers=bearer(wrong), expect_header="WWW-Authenticate")

    # Chats with a key carry its limits; a wrong key is refused on both routes.
    r("chat with a key", chat, "POST", 200, body=ask("hello with a key"), headers=bearer(plain["key"]), expect=both(
        header_has("RateLimit-Policy", '"requests";q=60;w=60', '"tokens";q=1000000;w=86400'),
        header_has("RateLimit", '"requests";r=59;', '"tokens";r=1000000;')))
    r("chat with a key, streamed", chat, "POST", 200, body=ask("a stream with a key", stream=True),
      headers=bearer(plain["key"]), events=lambda names: names[-1:] == ["done"],
      expect=header_has("RateLimit", '"requests";r=58;'))
    r("completion with a key", v1, "POST", 200, body=complete("hello with a key"), headers=bearer(plain["key"]),
      expect=header_has("RateLimit", '"requests";r=57;'))
    r("chat: a wrong key", chat, "POST", 401, "invalid_api_key", ask("hi"), headers=bearer(wrong),
      expect_header="WWW-Authenticate")
    r("chat: not a key", chat, "POST", 401, "invalid_api_key", ask("hi"), headers={"Authorization": "Basic dXNlcjpwYXNz"})
    r("completion: a wrong key", v1, "POST", 401, "invalid_api_key", complete("hi"), headers=bearer(wrong),
      expect=both(openai_type("invalid_request_error"), header_has("WWW-Authenticate", "Bearer")))

    # Past a key's requests per minute, and past its daily token budget.
    r("chat: the one request this minute", chat, "POST", 200, body=ask("the one this minute"), headers=bearer(one["key"]),
      expect=both(header_has("RateLimit-Policy", '"requests";q=1;w=60'), header_has("RateLimit", '"requests";r=0;')))
    r("chat: past the requests per minute", chat, "POST", 429, "rate_limited", ask("one more"), headers=bearer(one["key"]),
      expect_header="Retry-After", expect=both(
          header_has("RateLimit-Policy", '"requests";q=1;w=60'), header_has("RateLimit", '"requests";r=0;t='),
          body_is("the limit", lambda b: b["requests_per_minute"] == 1 and b["retry_after"] >= 1)))
    r("completion: past the requests per minute", v1, "POST", 429, "rate_limited", complete("one more"),
      headers=bearer(one["key"]), expect_header="Retry-After", expect=openai_type("rate_limit_error"))
    r("usage: none left this minute", usage, "GET", 200, headers=bearer(one["key"]), expect=body_is(
        "no requests left", lambda b: b["usage"]["requests_remaining"] == 0 and b["usage"]["requests_reset_seconds"] >= 1
        and b["usage"]["daily_token_budget"] is None))
    r("chat: the budget's one chat", chat, "POST", 200, body=ask("spend the whole budget"), headers=bearer(tiny["key"]),
      expect=header_has("RateLimit-Policy", '"tokens";q=1;w=86400'))
    r("chat: past the daily budget", chat, "POST", 429, "budget_exceeded", ask("one more"), headers=bearer(tiny["key"]),
      expect_header="Retry-After", expect=both(
          header_has("RateLimit-Policy", '"tokens";q=1;w=86400'), header_has("RateLimit", '"tokens";r=0;t='),
          body_is("the budget", lambda b: b["daily_token_budget"] == 1 and b["tokens_used"] > 1
                  and b["resets_at"].endswith("T00:00:00Z"))))
    r("completion: past the daily budget", v1, "POST", 429, "budget_exceeded", complete("one more"),
      headers=bearer(tiny["key"]), expect_header="Retry-After", expect=openai_type("insufficient_quota"))
    r("admin: a key's tokens today", key, "GET", 200, headers=admin, path_parameters=at(tiny["id"]), expect=body_is(
        "the budget spent", lambda b: b["usage"]["tokens_used"] > 1 and b["usage"]["tokens_remaining"] == 0))

    # Callers without a key share the anonymous limits of their address.
    r("chat: anonymous", chat, "POST", 200, body=ask("hello without a key"), expect=both(
        header_has("RateLimit-Policy", f'"requests";q={anonymous_rpm};w=60', f'"tokens";q={anonymous_tokens};w=86400'),
        header_has("RateLimit", f'"requests";r={anonymous_rpm - 1};')))
    r("completion: anonymous", v1, "POST", 200, body=complete("hello without a key"),
      expect=header_has("RateLimit", f'"requests";r={anonymous_rpm - 2};'))
    r("chat: anonymous, past the requests per minute", chat, "POST", 429, "rate_limited", ask("and again"),
      expect_header="Retry-After", expect=header_has("RateLimit-Policy", f'"requests";q={anonymous_rpm};w=60'))
    r("usage: anonymous, after those", usage, "GET", 200, expect=body_is(
        "no requests left, tokens used", lambda b: b["usage"]["requests_remaining"] == 0 and b["usage"]["tokens_used"] > 0))

    # A revoked key is refused at once.
    r("admin: revoke", key, "DELETE", 204, headers=admin, path_parameters=at(plain["id"]))
    r("admin: revoke again", key, "DELETE", 404, "key_not_found", headers=admin, path_parameters=at(plain["id"]))
    r("admin: show a revoked key", key, "GET", 404, "key_not_found", headers=admin, path_parameters=at(plain["id"]))
    r("chat: a revoked key", chat, "POST", 401, "invalid_api_key", ask("hi"), headers=bearer(plain["key"]))
    r("usage: a revoked key", usage, "GET", 401, "invalid_api_key", headers=bearer(plain["key"]))


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
            failures.append(f"/docs: the CSP does not allow the page's {tag}; set `{directive} 'sha256-{digest}'` in DOCS_CSP (src/info.rs)")
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


def main(base_url, runtime, unconfigured, keyed=None):
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    r = lambda *a, **k: run(schema, base_url, runtime, *a, **k)
    chat, v1 = "/chat", "/v1/chat/completions"
    ask = lambda text, **extra: {"message": text, **extra}
    complete = lambda text, model="ion-auto", **extra: {"model": model, "messages": [{"role": "user", "content": text}], **extra}

    if unconfigured:
        r("chat: not configured", chat, "POST", 503, "not_configured", ask("hi"))
        r("completion: not configured", v1, "POST", 503, "not_configured", complete("hi"))
        return

    for path in ["/", "/health", "/docs", "/openapi.json", "/v1/models", "/usage"]:
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
    r("chat: a token limit spent on thinking", chat, "POST", 200, body=ask("hi", thinking_level="high", max_output_tokens=10),
      expect=body_is("an empty, truncated answer", lambda b: b["metadata"]["truncated"] is True and b["content"] == ""))
    r("chat: empty answer", chat, "POST", 502, "upstream_empty_answer", ask("hi [[emulator:empty]]"))
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
    r("OPTIONS conversation, an id that cannot exist", conv, "OPTIONS", 404, "not_found", path_parameters=at("xyz"))
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
    r("completion: content filtered", v1, "POST", 200, body=complete("x [[emulator:safety]]"))
    r("completion: a token limit spent on thinking", v1, "POST", 200,
      body=complete("hi", max_completion_tokens=8, reasoning_effort="high"))
    r("completion: json schema output", v1, "POST", 200, body=complete("hi", response_format={
        "type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}}))
    r("completion: a tool call", v1, "POST", 200, body=complete("weather?", tools=[
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        tool_choice="required"))
    r("completion: a tool result answering no call", v1, "POST", 400, body={"model": "ion-auto", "messages": [
        {"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_x", "content": "3"}]})
    r("completion: unsupported field", v1, "POST", 400, body=complete("hi", logprobs=True))
    r("model: one", "/v1/models/{model}", "GET", 200, path_parameters={"model": "ion-lua"})
    r("model: unknown", "/v1/models/{model}", "GET", 404, "model_not_found", path_parameters={"model": "gpt-4o"})
    r("completion: too large", v1, "POST", 413, "payload_too_large", complete("가" * 50_000))
    r("completion: not JSON", v1, "POST", 415, "unsupported_media_type", complete("hi"), headers={"Content-Type": "text/plain"})
    r("completion: invalid", v1, "POST", 400, body=complete("hi", n=2))
    r("completion: rate limited", v1, "POST", 429, "upstream_rate_limited", complete("hi [[emulator:429]]"), expect_header="Retry-After")
    r("completion: upstream failed", v1, "POST", 502, "upstream_error", complete("hi [[emulator:500]]"))
    r("completion: Vertex AI refused the request", v1, "POST", 400, "upstream_rejected", complete("hi [[emulator:400]]"))
    r("completion: upstream too slow", v1, "POST", 504, "upstream_timeout", complete("hi [[emulator:slow]]"))

    access_off(r, ask)
    access(keyed[0], runtime, keyed[1])

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
                codes = documented_codes(response)
                if codes and all(f"{status} {code}" in NOT_EXERCISED for code in codes):
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
    elif "--unconfigured" in args:
        main(args[0].rstrip("/"), args[1], True)
    else:
        if "--keys" not in args or len(args) < args.index("--keys") + 3:
            sys.exit("the full check needs --keys KEYS_URL ADMIN_TOKEN (see the usage above)")
        at = args.index("--keys")
        main(args[0].rstrip("/"), args[1], False, (args[at + 1].rstrip("/"), args[at + 2]))
    if failures:
        print(f"\n{len(failures)} contract failure(s):\n")
        print("\n\n".join(failures))
        sys.exit(1)
    print("\nthe service answers as its /openapi.json says")
