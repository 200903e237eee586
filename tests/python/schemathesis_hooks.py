"""Schemathesis hooks for the contract run (tests/api_contract.rs).

`not_a_server_error` fails on every 5xx. This run replaces it with `no_server_fault`, which is as
strict except for the 5xx that the API documents as Vertex AI's outcome of the request itself:

- 502 `upstream_empty_answer` with finish reason MAX_TOKENS: the request's own
  `max_output_tokens` left nothing after thinking (the emulator models this as Vertex AI does);
- any upstream error (`upstream_*`, 503/504 from the runtime's deadline) when the generated
  request happened to carry an emulator fault marker (`[[emulator:...]]`), which asks the
  emulator to fail on purpose.

Every other 5xx, and every 5xx whose body is not the documented JSON error, is a failure.
"""

import json

import schemathesis

FAULT_MARKER = "[[emulator:"


def _error_code(body):
    """The `code` of either error shape: `{code}` or OpenAI's `{error: {code}}`."""
    if not isinstance(body, dict):
        return None, None
    if isinstance(body.get("error"), dict):
        return body["error"].get("code"), body["error"].get("message", "")
    return body.get("code"), body.get("finish_reason")


def _carries_fault_marker(case):
    try:
        text = json.dumps(case.body, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(case.body)
    return FAULT_MARKER in text or "x-emulator-fault" in {k.lower() for k in (case.headers or {})}


@schemathesis.check
def no_server_fault(ctx, response, case):
    if response.status_code < 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{response.status_code} without a JSON body: {response.content[:300]!r}")
    code, detail = _error_code(body)
    if code == "upstream_empty_answer" and "MAX_TOKENS" in str(detail):
        return None
    if _carries_fault_marker(case) and (
        str(code).startswith("upstream_") or code in ("deadline_exceeded", "content_blocked")
    ):
        return None
    raise AssertionError(f"server error {response.status_code} (code {code!r}): {response.content[:300]!r}")


@schemathesis.check
def conforming_chat_is_accepted(ctx, response, case):
    """A `/chat` body that conforms to the schema is never a 422: the schema states every rule
    validation applies (the control-character and blank-message rules as a `pattern`).

    Only `/chat`: `/v1/chat/completions` has a rule JSON Schema cannot state (the last message
    must be the user's), so schemathesis's own positive_data_acceptance cannot run there.
    """
    if case.operation.path != "/chat" or case.operation.method.upper() != "POST":
        return None
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code == 422:
        raise AssertionError(
            f"a schema-conforming body got a 422: {response.content[:500]!r}\nbody: {case.body!r}"
        )
    return None
