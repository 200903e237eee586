"""The official `openai` package with an Ion API key as its `api_key` (tests/access.rs).

Usage: python openai_keys.py BASE_URL KEY SPENT_KEY
  KEY: a key with room left; SPENT_KEY: a key whose daily token budget is spent.
Prints one line per check and exits non-zero on the first failure.
"""

import sys

import openai


def check(name, condition, detail=""):
    if not condition:
        raise SystemExit(f"FAIL {name}: {detail}")
    print(f"ok   {name}")


def client(base_url, api_key):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=30)


def ask(c):
    return c.chat.completions.create(
        model="ion-auto", messages=[{"role": "user", "content": "How do I start learning Rust?"}]
    )


def main(base_url, key, spent_key):
    completion = ask(client(base_url, key))
    check("a key as api_key: answered", completion.choices[0].message.content, completion)
    check("a key as api_key: usage", completion.usage.total_tokens > 0, completion.usage)

    raw = client(base_url, key).chat.completions.with_raw_response.create(
        model="ion-auto", messages=[{"role": "user", "content": "And then?"}]
    )
    check("the answer carries RateLimit", "requests" in raw.headers.get("ratelimit", ""), dict(raw.headers))

    for name, bad in [("unknown", "ion_sk_000000000000_" + "0" * 32), ("foreign", "sk-proj-abc"), ("truncated", key[:-1])]:
        try:
            ask(client(base_url, bad))
            raise SystemExit(f"FAIL {name} key: answered")
        except openai.AuthenticationError as e:
            check(f"{name} key: AuthenticationError 401", e.status_code == 401, e)
            check(f"{name} key: code invalid_api_key", e.code == "invalid_api_key", e.body)
            check(f"{name} key: type", e.type == "invalid_request_error", e.body)

    try:
        ask(client(base_url, spent_key))
        raise SystemExit("FAIL spent budget: answered")
    except openai.RateLimitError as e:
        check("spent budget: RateLimitError 429", e.status_code == 429, e)
        check("spent budget: code budget_exceeded", e.code == "budget_exceeded", e.body)
        check("spent budget: type insufficient_quota", e.type == "insufficient_quota", e.body)
        wait = int(e.response.headers["retry-after"])
        check("spent budget: Retry-After until UTC midnight", 0 < wait <= 86400, wait)


if __name__ == "__main__":
    main(*sys.argv[1:4])
