"""The official `openai` package, unchanged, against the service's /v1 (tests/api_contract.rs).

Usage: python openai_client.py BASE_URL   (e.g. http://127.0.0.1:8080; the emulator answers)
Prints one line per check and exits non-zero on the first failure.
"""

import json
import sys

import openai
import pydantic


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
        check("a blank message raises BadRequestError", False, "no error")
    except openai.BadRequestError as e:
        check("a blank message raises BadRequestError", e.status_code == 400 and e.body.get("type") == "invalid_request_error", e.body)

    try:
        client.chat.completions.create(model="ion-auto", messages=[{"role": "user", "content": "hi"}], logprobs=True)
        check("an unsupported field raises BadRequestError", False, "no error")
    except openai.BadRequestError as e:
        check("an unsupported field raises BadRequestError naming it", e.body.get("param") == "logprobs", e.body)

    model = client.models.retrieve("ion-lua")
    check("models.retrieve", model.id == "ion-lua" and model.owned_by == "ion-mentoring", model)

    structured_output(client)
    two_step_tool_call(client)
    streamed_tool_call(client)

    small = client.chat.completions.create(
        model="ion-auto", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=8, reasoning_effort="high")
    check("a small max_completion_tokens is finish_reason length, not an error",
          small.choices[0].finish_reason == "length" and small.choices[0].message.content == "", small.choices[0])

    filtered = client.chat.completions.create(model="ion-auto", messages=[{"role": "user", "content": "x [[emulator:safety]]"}])
    check("a withheld answer is finish_reason content_filter", filtered.choices[0].finish_reason == "content_filter", filtered.choices[0])


class Plan(pydantic.BaseModel):
    title: str
    steps: list[str]
    weeks: int


def structured_output(client):
    """`.parse()` sends a strict json_schema (pydantic's, with $defs when nested) and reads the
    answer back into the model."""
    parsed = client.chat.completions.parse(
        model="ion-auto",
        messages=[{"role": "user", "content": "A plan to learn Rust"}],
        response_format=Plan,
    )
    plan = parsed.choices[0].message.parsed
    check("parse: the answer is the pydantic model", isinstance(plan, Plan) and plan.weeks >= 0 and len(plan.steps) >= 1, plan)
    mode = client.chat.completions.create(
        model="ion-auto", messages=[{"role": "user", "content": "json please"}], response_format={"type": "json_object"})
    check("json_object: the content is a JSON object", isinstance(json.loads(mode.choices[0].message.content), dict), mode)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def two_step_tool_call(client):
    """The model calls a function; the client runs it and sends the call (as it was, id and
    all) and the result back; the model answers with the result. Gemini 3 refuses the second
    request unless the call's thought signature comes back, which the id carries."""
    messages = [{"role": "user", "content": "What is the weather in Seoul?"}]
    first = client.chat.completions.create(model="ion-auto", messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    check("tools: finish_reason tool_calls", choice.finish_reason == "tool_calls", choice)
    call = choice.message.tool_calls[0]
    args = json.loads(call.function.arguments)
    check("tools: the call names the function with its arguments", call.function.name == "get_weather" and "city" in args, call)
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 3})})
    second = client.chat.completions.create(model="ion-auto", messages=messages, tools=[WEATHER])
    answer = second.choices[0].message.content
    check("tools: the answer uses the result", second.choices[0].finish_reason == "stop" and "temp_c" in answer, answer)

    # Without the id the signature is lost, and Gemini (the emulator, as Vertex AI) refuses.
    broken = [dict(m) for m in messages]
    broken[1] = {**broken[1], "tool_calls": [{**broken[1]["tool_calls"][0], "id": "call_plain"}]}
    broken[2] = {**broken[2], "tool_call_id": "call_plain"}
    try:
        client.chat.completions.create(model="ion-auto", messages=broken, tools=[WEATHER])
        check("tools: a call without its signature is refused upstream", False, "no error")
    except openai.BadRequestError as e:
        check("tools: a call without its signature is the caller's 400, in Vertex AI's words",
              e.status_code == 400 and "thought_signature" in str(e.body), e.body)


def streamed_tool_call(client):
    stream = client.chat.completions.create(
        model="ion-auto", messages=[{"role": "user", "content": "Weather in Busan?"}], tools=[WEATHER], stream=True)
    calls, finish = {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = delta.id or entry["id"]
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    check("stream tools: one call, finish_reason tool_calls", len(calls) == 1 and finish == "tool_calls", (calls, finish))
    check("stream tools: the call's arguments are JSON", "city" in json.loads(calls[0]["arguments"]), calls)


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))
