"""Schemathesis hooks for the contract run (tests/api_contract.rs), which runs every check
(`--checks all`) with positive and negative data.

The document states every rule JSON Schema can state. `/v1/chat/completions` has a few that it
cannot (its description lists them): the conversation needs a user message (or only system
messages), must end with a user message or a tool result, and each `tool` message answers a
tool call an earlier assistant message made (ids unique); `tool_choice` names a declared function. The
filter below keeps generated bodies to those rules, so that positive data is really valid and
`positive_data_acceptance` can run on that operation too. A body that breaks one of them is
tested by tests/python/contract_check.py and the unit tests instead.

No check is replaced: a generated request that carries an emulator fault marker
(`[[emulator:...]]`, which asks the emulator to fail on purpose) is filtered out rather than
excused.
"""

import json

import schemathesis

FAULT_MARKER = "[[emulator:"


def _follows_conversation_rules(body):
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return True  # not a conversation: the schema decides
    roles = [m.get("role") for m in messages]
    if not roles:
        return True
    if all(r in ("system", "developer") for r in roles):
        return True
    if "user" not in roles or roles[-1] not in ("user", "tool"):
        return False
    made = set()
    for m in messages:
        if m.get("role") == "assistant" and isinstance(m.get("tool_calls"), list):
            ids = [c.get("id") for c in m["tool_calls"] if isinstance(c, dict)]
            if len(set(ids)) != len(ids) or made.intersection(ids):
                return False  # tool call ids are unique in the conversation
            made.update(ids)
        if m.get("role") == "tool" and m.get("tool_call_id") not in made:
            return False
    return True


def _follows_tool_rules(body):
    tools = body.get("tools")
    names = []
    if isinstance(tools, list):
        names = [
            t.get("function", {}).get("name")
            for t in tools
            if isinstance(t, dict) and isinstance(t.get("function"), dict)
        ]
        if len(names) != len(set(names)):
            return False
    choice = body.get("tool_choice")
    if choice in ("auto", "required") and not names:
        return False
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        if name not in names:
            return False
    return True


@schemathesis.hook
def filter_body(ctx, body):
    try:
        text = json.dumps(body, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(body)
    if FAULT_MARKER in text:
        return False
    if ctx.operation is None or ctx.operation.path != "/v1/chat/completions":
        return True
    if not isinstance(body, dict):
        return True
    return _follows_conversation_rules(body) and _follows_tool_rules(body)
