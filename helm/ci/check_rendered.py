"""Checks on a rendered chart that no Kubernetes schema makes: the parts fit each
other (Services and the autoscaler find their pods), every container is probed,
bounded and unprivileged, and ServiceMonitors have the shape the operator reads.

Usage: check_rendered.py RENDERED.yaml SERVICEMONITOR_SCHEMA.json
"""

import json
import sys

import jsonschema
import yaml


def fail(message):
    print(f"check_rendered: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
    monitor_schema = json.load(open(sys.argv[2]))
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    if len(deployments) != 3:
        fail(f"expected 3 Deployments, found {sorted(deployments)}")
    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}

    def selects(selector, what):
        if not any(all(l.get(k) == v for k, v in selector.items()) for l in pod_labels.values()):
            fail(f"{what} selects no pods: {selector}")

    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            fail(f"{name}: pods must run as non-root")
        selects(d["spec"]["selector"]["matchLabels"], f"Deployment {name}")
        for c in spec["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    fail(f"{name}/{c['name']}: no {probe}")
                if "timeoutSeconds" not in c[probe]:
                    fail(f"{name}/{c['name']}: {probe} sets no timeoutSeconds")
            if "memory" not in c.get("resources", {}).get("limits", {}):
                fail(f"{name}/{c['name']}: no memory limit")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(f"{name}/{c['name']}: privilege escalation allowed")
            if ":" not in c["image"] or c["image"].endswith(":"):
                fail(f"{name}/{c['name']}: image without a tag: {c['image']}")
    data_plane = [d for n, d in deployments.items() if n.endswith("-data-plane")][0]
    probe = data_plane["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    if probe["httpGet"]["path"] != "/readyz":
        fail("the data plane must be ready only with a snapshot (/readyz)")
    check_data_plane_shutdown(data_plane["spec"]["template"]["spec"])

    for s in by_kind.get("Service", []):
        selects(s["spec"]["selector"], f"Service {s['metadata']['name']}")
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        target = h["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            fail(f"HPA scales {target}, which is not rendered")
        if "replicas" in deployments[target]["spec"]:
            fail(f"{target} sets replicas while an HPA owns them")
    for p in by_kind.get("PodDisruptionBudget", []):
        selects(p["spec"]["selector"]["matchLabels"], f"PDB {p['metadata']['name']}")
    for n in by_kind.get("NetworkPolicy", []):
        selects(n["spec"]["podSelector"]["matchLabels"], f"NetworkPolicy {n['metadata']['name']}")
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for i in by_kind.get("Ingress", []):
        for rule in i["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = [p["name"] for p in services.get(backend["name"], {}).get("spec", {}).get("ports", [])]
                if backend["port"].get("name") not in ports:
                    fail(f"Ingress {i['metadata']['name']} sends to {backend}, which no Service has")
                if backend["port"].get("name") == "grpc":
                    fail(f"Ingress {i['metadata']['name']} exposes a gRPC port")
    for m in by_kind.get("ServiceMonitor", []):
        try:
            jsonschema.validate(m, monitor_schema)
        except jsonschema.ValidationError as e:
            fail(f"ServiceMonitor {m['metadata']['name']}: {e.message}")
        wanted = m["spec"]["selector"]["matchLabels"]
        ports = [p["name"] for s in services.values()
                 if all(s["metadata"]["labels"].get(k) == v for k, v in wanted.items())
                 for p in s["spec"]["ports"]]
        if m["spec"]["endpoints"][0]["port"] not in ports:
            fail(f"ServiceMonitor {m['metadata']['name']} finds no Service port {m['spec']['endpoints'][0]['port']}")
    print(f"check_rendered: {len(docs)} resources fit together")


def flag(args, name, default=0):
    """The value of `--name=value` among a container's args."""
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


def check_data_plane_shutdown(pod):
    """Endpoints go before SIGTERM, and Kubernetes waits out the whole drain; usage
    that cannot be delivered yet is spooled on a volume."""
    c = pod["containers"][0]
    args = c.get("args", [])
    pause = 0
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if pre_stop[:1] == ["sleep"]:
        pause = int(pre_stop[1])
    if pause < 1:
        fail("the data plane needs a preStop pause, so endpoints are removed before SIGTERM")
    shutdown = pause + int(flag(args, "drain-timeout-seconds")) + int(flag(args, "usage-flush-timeout-seconds", 15))
    if pod.get("terminationGracePeriodSeconds", 30) <= shutdown:
        fail(f"the data plane's terminationGracePeriodSeconds must exceed its shutdown ({shutdown} s)")
    spool = flag(args, "usage-spool-dir", None)
    if not spool:
        fail("the data plane must spool usage (--usage-spool-dir)")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    if spool not in mounts or mounts[spool] not in {v["name"] for v in pod.get("volumes", [])}:
        fail(f"the usage spool {spool} is not on a volume")


if __name__ == "__main__":
    main()
