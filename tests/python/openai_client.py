"""The official `openai` package, unchanged, against the service's /v1 (tests/api_contract.rs).

Usage: python openai_client.py BASE_URL   (e.g. http://127.0.0.1:8080; the emulator answers)
Prints one line per check and exits non-zero on the first failure.
"""

import sys

import openai


def check(name, condition, detail=""):
    if not condition:
        raise SystemExit(f"FAIL {name}: {detail}")
    print(f"ok   {name}")


def main(base_url):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=30)

    ids = [m.id for m in client.models.list()]
    check("models.list names ion-auto and the personas", {"ion-auto", "ion-lua", "ion-elro", "ion-riri", "ion-nana"} <= set(ids), ids)
    gemini = [i for i in ids if i.startswith("gemini-")]
    check("models.list names the Gemini model", len(gemini) == 1, ids)

    completion = client.chat.completions.create(
        model="ion-auto",
        messages=[{"role": "user", "content": "How do I start learning Rust?"}],
        reasoning_effort="low",
    )
    content = completion.choices[0].message.content
    check("plain: content", isinstance(content, str) and "How do I start learning Rust?" in content, content)
    check("plain: model echoed", completion.model == "ion-auto", completion.model)
    check("plain: finish_reason", completion.choices[0].finish_reason == "stop", completion.choices[0].finish_reason)
    usage = completion.usage
    reasoning = usage.completion_tokens_details.reasoning_tokens
    check("plain: usage", usage.prompt_tokens > 0 and usage.completion_tokens > reasoning > 0, usage)
    check("plain: total = prompt + completion", usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage)

    stream = client.chat.completions.create(
        model=gemini[0],
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Tell me about ownership."},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas, finish, stream_usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            if chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            stream_usage = chunk.usage
    text = "".join(deltas)
    check("stream: several deltas", len(deltas) > 1, deltas)
    check("stream: the deltas make the answer", "Tell me about ownership." in text, text)
    check("stream: finish_reason", finish == "stop", finish)
    check("stream: usage chunk", stream_usage is not None and stream_usage.completion_tokens_details.reasoning_tokens > 0, stream_usage)

    try:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        check("unknown model raises NotFoundError", False, "no error")
    except openai.NotFoundError as e:
        check("unknown model raises NotFoundError", e.status_code == 404 and e.code == "model_not_found", (e.status_code, e.code))

    try:
        client.chat.completions.create(model="ion-auto", messages=[{"role": "user", "content": "hi [[emulator:429]]"}])
        check("upstream 429 raises RateLimitError", False, "no error")
    except openai.RateLimitError as e:
        retry_after = e.response.headers.get("retry-after")
        check("upstream 429 raises RateLimitError", e.status_code == 429 and e.code == "upstream_rate_limited", (e.status_code, e.code))
        check("upstream 429 says Retry-After", retry_after is not None and retry_after.isdigit(), retry_after)

    try:
        client.chat.completions.create(model="ion-auto", messages=[{"role": "user", "content": " "}])
        check("a blank message raises UnprocessableEntityError", False, "no error")
    except openai.UnprocessableEntityError as e:
        check("a blank message raises UnprocessableEntityError", e.status_code == 422 and e.body.get("type") == "invalid_request_error", e.body)


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))
