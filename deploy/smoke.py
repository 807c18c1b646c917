"""A call that crosses every part of the local stack: an account and provider key
written through one control-plane replica reach both data planes; a key issued
through the other replica works on both; the usage of every call reaches the
collector and comes back through a control plane's bill; every service reports
metrics and readiness.

Usage: smoke.py --root-key K --upstream URL --control-planes A B --data-planes A B
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def call(method, url, key=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if key:
        request.add_header("authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            text = r.read().decode()
            return r.status, text
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def until(what, check, seconds=20):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            sys.exit(f"smoke: {what} did not happen within {seconds} s")
        time.sleep(0.1)


def chat(data_plane, key):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello stack"}]}
    return call("POST", f"{data_plane}/v1/chat/completions", key, body)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root-key", required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--control-planes", nargs=2, required=True)
    p.add_argument("--data-planes", nargs=2, required=True)
    a = p.parse_args()
    cp_a, cp_b = a.control_planes

    status, text = call("POST", f"{cp_a}/x-users", a.root_key, {"name": "stack-smoke"})
    assert status == 201, (status, text)
    owner = json.loads(text)["api_key"]
    status, text = call("POST", f"{cp_b}/x-keys", owner, {
        "provider": "openai", "base_url": a.upstream,
        "secret": "sk-stack-smoke-0123456789", "models": ["*"]})
    assert status == 201, (status, text)
    for dp in a.data_planes:
        until(f"a call through {dp}", lambda dp=dp: chat(dp, owner)[0] == 200)

    status, text = call("POST", f"{cp_b}/x-self/keys", owner, {})
    assert status == 201, (status, text)
    second = json.loads(text)["api_key"]
    for dp in a.data_planes:
        until(f"the second key at {dp}", lambda dp=dp: chat(dp, second)[0] == 200)

    def every_data_plane_current():
        status, text = call("GET", f"{cp_b}/dashboard/status", a.root_key)
        if status != 200:
            return False
        body = json.loads(text)
        planes = body.get("data_planes", [])
        return len(planes) == 2 and all(
            p.get("applied_version") == body.get("config_revision") for p in planes)
    until("both data planes listed at the newest version", every_data_plane_current)

    def billed():
        status, text = call("GET", f"{cp_a}/x-bill", owner)
        if status != 200:
            return False
        rows = json.loads(text).get("rows", [])
        return sum(r.get("requests", 0) for r in rows) >= 4
    until("usage of four calls in the bill", billed)

    for dp in a.data_planes:
        status, text = call("GET", f"{dp}/metrics")
        assert status == 200 and "switchyard_requests_total" in text, (dp, status)
        status, text = call("GET", f"{dp}/readyz")
        assert status == 200 and json.loads(text)["fresh"], (dp, status, text)
    for cp in a.control_planes:
        status, text = call("GET", f"{cp}/metrics")
        assert status == 200 and "switchyard_data_planes_connected" in text, (cp, status)
    print("smoke: accounts, keys, snapshots, calls, usage and metrics cross the whole stack")


if __name__ == "__main__":
    main()
