#!/usr/bin/env python3
"""Every metric name that the Grafana dashboard, the recording rules, the
alerts, the HPA and the prometheus-adapter rule use exists in a running
mtla-server's /metrics; every recording-rule name they use is defined; the
dashboard is well-formed and has the panels the deployment guide promises.

usage: check_metric_names.py MTLA_SERVER TESTDATA_DIR
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import (REPO, Server, check, fail, metric_samples, model_dir,  # noqa: E402
                          need_yaml, promql_metric_names)

need_yaml()
import yaml  # noqa: E402

server_bin, testdata = sys.argv[1:3]
deploy = os.path.join(REPO, "deploy")

with Server(server_bin, model_dir(testdata)).wait_serving() as server:
    exposed = set(metric_samples(server.metrics_text()))
check(any(n.startswith("mtla_") for n in exposed), f"/metrics exposes {len(exposed)} sample names")

# Where each name is used: {source: [PromQL expressions]}.
uses = {}
recorded = set()
for path in sorted(glob.glob(os.path.join(deploy, "prometheus", "rules", "*.yml"))):
    for group in yaml.safe_load(open(path))["groups"]:
        for rule in group["rules"]:
            name = rule.get("record") or rule.get("alert")
            uses.setdefault(f"{os.path.basename(path)}:{name}", []).append(rule["expr"])
            if "record" in rule:
                recorded.add(rule["record"])

dashboard = json.load(open(os.path.join(deploy, "grafana", "mtla-serving.json")))
titles = []
ids = set()
for panel in dashboard["panels"]:
    if panel["id"] in ids:
        fail(f"dashboard: duplicate panel id {panel['id']}")
    ids.add(panel["id"])
    g = panel["gridPos"]
    if g["x"] + g["w"] > 24:
        fail(f"dashboard: panel {panel['title']} is wider than the grid")
    if panel["type"] == "row":
        continue
    titles.append(panel["title"])
    if not panel.get("targets"):
        fail(f"dashboard: panel {panel['title']} has no query")
    for target in panel["targets"]:
        uses.setdefault(f"dashboard:{panel['title']}", []).append(target["expr"])
for var in dashboard["templating"]["list"]:
    if var["type"] == "query":
        uses.setdefault(f"dashboard:${var['name']}", []).append(var["query"]["query"])

for path in glob.glob(os.path.join(deploy, "k8s", "**", "*.yaml"), recursive=True):
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == "HorizontalPodAutoscaler":
            for metric in doc["spec"].get("metrics", []):
                for kind in ("pods", "object", "external"):
                    if kind in metric:
                        uses.setdefault(f"{os.path.relpath(path, REPO)}:hpa", []).append(
                            metric[kind]["metric"]["name"])
adapter = yaml.safe_load(open(os.path.join(deploy, "k8s", "prometheus-adapter", "values.yaml")))
for rule in adapter["rules"]["custom"]:
    series = rule["seriesQuery"]
    query = rule["metricsQuery"].replace("<<.Series>>", series.split("{")[0]) \
        .replace("<<.LabelMatchers>>", 'namespace="x"').replace("<<.GroupBy>>", "pod")
    uses.setdefault("prometheus-adapter", []).extend([series, query, rule["name"]["as"]])
check(any(k.endswith(":hpa") for k in uses), "found the HPA metrics")

missing = []
used_names = set()
for source, exprs in sorted(uses.items()):
    for expr in exprs:
        raw, rec = promql_metric_names(expr)
        used_names |= raw
        for name in sorted(raw - exposed):
            missing.append(f"{source}: {name} is not in /metrics")
        for name in sorted(rec - recorded):
            missing.append(f"{source}: {name} is not a recording rule")
for line in missing:
    print("MISSING", line)
check(not missing, f"all {len(used_names)} mtla_* names used are exposed and all recording rules are defined")
print("names used:", " ".join(sorted(used_names)))

# The panels the issue and docs/deployment.md list.
want = ["Request rate by status", "Time to first token", "Inter-token latency", "End-to-end latency",
        "Requests running / waiting", "KV cache usage", "KV cache blocks", "KV bytes per token",
        "Tokens per second", "Batch size", "Engine step time", "Preemptions", "Audio real-time factor",
        "Time per output token", "Prefill and decode time", "Tokens per request",
        "Tokens per engine step", "Speech segments by outcome", "Interim decodes",
        "Resident memory", "CPU", "Build and cache configuration"]
check(all(t in titles for t in want), f"dashboard has the panels {want}")
check(dashboard["uid"] == "mtla-serving", "dashboard uid is stable (mtla-serving)")
print("PASS")
