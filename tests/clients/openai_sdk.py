"""The OpenAI Python SDK's Chat Completions and Responses against Switchyard.

Usage: openai_sdk.py chat|stream|tools|tools-stream|responses|responses-stream [END_USER]
Reads SWITCHYARD_BASE_URL (the data plane's root) and SWITCHYARD_KEY (an issued
key); prints what the SDK returned as JSON. END_USER goes as `safety_identifier`
(chat) or `user` (stream).
"""

import json
import os
import sys

from openai import OpenAI, NOT_GIVEN

mode = sys.argv[1]
end_user = sys.argv[2] if len(sys.argv) > 2 else None
client = OpenAI(
    base_url=os.environ["SWITCHYARD_BASE_URL"] + "/v1",
    api_key=os.environ["SWITCHYARD_KEY"],
    max_retries=0,
    timeout=20,
)
model = "gpt-4o-mini"

if mode == "chat":
    r = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello from the openai sdk"},
        ],
        safety_identifier=end_user or NOT_GIVEN,
    )
    models = [m.id for m in client.models.list()]
    print(json.dumps({
        "text": r.choices[0].message.content,
        "finish_reason": r.choices[0].finish_reason,
        "usage": r.usage.model_dump(),
        "models": models,
    }))
elif mode == "stream":
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream from the openai sdk"}],
        stream=True,
        stream_options={"include_usage": True},
        user=end_user or NOT_GIVEN,
    )
    text, chunks, usage = "", 0, None
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage.model_dump()
    print(json.dumps({"text": text, "chunks": chunks, "usage": usage}))
elif mode in ("tools", "tools-stream"):
    tools = [{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }]
    messages = [{"role": "user", "content": 'weather? [[tool get_weather {"city": "Oslo"}]]'}]
    if mode == "tools-stream":
        # The call arrives in deltas; the SDK's helper puts it together.
        with client.chat.completions.stream(model=model, messages=messages, tools=tools) as stream:
            for _ in stream:
                pass
            first = stream.get_final_completion()
    else:
        first = client.chat.completions.create(model=model, messages=messages, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    arguments = json.loads(call.function.arguments)
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({
        "role": "tool",
        "tool_call_id": call.id,
        "content": f"sunny in {arguments['city']}",
    })
    second = client.chat.completions.create(model=model, messages=messages, tools=tools)
    print(json.dumps({
        "stops": [first.choices[0].finish_reason, second.choices[0].finish_reason],
        "tool": call.function.name,
        "arguments": arguments,
        "text": second.choices[0].message.content,
    }))
elif mode == "responses":
    r = client.responses.create(
        model=model,
        instructions="be brief",
        input="hello from the responses api",
    )
    print(json.dumps({"text": r.output_text, "status": r.status, "usage": r.usage.model_dump()}))
elif mode == "responses-stream":
    text, kinds, usage = "", [], None
    with client.responses.stream(model=model, input="stream the responses api") as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response()
        usage = final.usage.model_dump()
    print(json.dumps({"text": text, "final_text": final.output_text, "events": kinds, "usage": usage}))
else:
    sys.exit(f"unknown mode {mode}")
