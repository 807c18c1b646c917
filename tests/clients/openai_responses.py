"""The OpenAI Python SDK's Responses API against Switchyard.

Usage: openai_responses.py json|stream
Reads SWITCHYARD_BASE_URL (the data plane's root) and SWITCHYARD_KEY (an issued
key); prints what the SDK returned as JSON.
"""

import json
import os
import sys

from openai import OpenAI

mode = sys.argv[1]
client = OpenAI(
    base_url=os.environ["SWITCHYARD_BASE_URL"] + "/v1",
    api_key=os.environ["SWITCHYARD_KEY"],
    max_retries=0,
    timeout=20,
)
model = "gpt-4o-mini"

if mode == "json":
    r = client.responses.create(
        model=model,
        instructions="be brief",
        input="hello from the responses api",
    )
    print(json.dumps({"text": r.output_text, "status": r.status, "usage": r.usage.model_dump()}))
elif mode == "stream":
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
