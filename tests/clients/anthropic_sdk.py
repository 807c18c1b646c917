"""The Anthropic Python SDK's Messages API against Switchyard.

Usage: anthropic_sdk.py messages|stream|tools|thinking [END_USER]
Reads SWITCHYARD_BASE_URL (the data plane's root) and SWITCHYARD_KEY (an issued
key); prints what the SDK returned as JSON. END_USER goes as metadata.user_id.
"""

import json
import os
import sys

from anthropic import Anthropic, NOT_GIVEN

mode = sys.argv[1]
end_user = sys.argv[2] if len(sys.argv) > 2 else None
client = Anthropic(
    base_url=os.environ["SWITCHYARD_BASE_URL"],
    api_key=os.environ["SWITCHYARD_KEY"],
    max_retries=0,
    timeout=20,
)
model = "claude-sonnet-4-5"
metadata = {"user_id": end_user} if end_user else NOT_GIVEN


def texts(message):
    return "".join(b.text for b in message.content if b.type == "text")


if mode == "messages":
    r = client.messages.create(
        model=model,
        max_tokens=256,
        system="be brief",
        messages=[{"role": "user", "content": "hello from the anthropic sdk"}],
        metadata=metadata,
    )
    counted = client.messages.count_tokens(
        model=model,
        system="be brief",
        messages=[{"role": "user", "content": "hello from the anthropic sdk"}],
    )
    models = [m.id for m in client.models.list()]
    print(json.dumps({"text": texts(r), "stop_reason": r.stop_reason, "usage": r.usage.model_dump(),
                      "counted": counted.input_tokens, "models": models}))
elif mode == "stream":
    text, kinds = "", []
    with client.messages.stream(
        model=model,
        max_tokens=256,
        messages=[{"role": "user", "content": "stream from the anthropic sdk"}],
        metadata=metadata,
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
        final = stream.get_final_message()
    print(json.dumps({"text": text, "final_text": texts(final), "events": kinds,
                      "usage": final.usage.model_dump()}))
elif mode == "tools":
    tools = [{
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }]
    messages = [{"role": "user", "content": 'weather? [[tool get_weather {"city": "Lima"}]]'}]
    first = client.messages.create(model=model, max_tokens=256, tools=tools, messages=messages)
    call = next(b for b in first.content if b.type == "tool_use")
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
    messages.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "content": f"foggy in {call.input['city']}"},
    ]})
    second = client.messages.create(model=model, max_tokens=256, tools=tools, messages=messages)
    print(json.dumps({
        "stops": [first.stop_reason, second.stop_reason],
        "tool": call.name,
        "arguments": call.input,
        "text": texts(second),
    }))
elif mode == "thinking":
    thinking, text = "", ""
    with client.messages.stream(
        model=model,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think it over"}],
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "thinking_delta":
                thinking += event.delta.thinking
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
        final = stream.get_final_message()
    blocks = [b.type for b in final.content]
    signature = next((b.signature for b in final.content if b.type == "thinking"), None)
    print(json.dumps({"thinking": thinking, "text": text, "blocks": blocks, "signature": signature}))
else:
    sys.exit(f"unknown mode {mode}")
