#!/usr/bin/env python3
"""A real Prometheus (Debian's /usr/bin/prometheus) on 127.0.0.1 scrapes a
running mtla-server every second while mtla-bench loads it; the recording
rules of deploy/prometheus/rules must then return values through the HTTP API
(/api/v1/query), every rule must evaluate without error, the
prometheus-adapter query behind the HPA must return the queue length per pod,
and the scraped token counter must equal what mtla-bench received.

usage: prometheus_e2e.py MTLA_SERVER MTLA_BENCH TESTDATA_DIR [PROMETHEUS]
"""
import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import (REPO, Server, check, fail, free_port, http_get, model_dir,  # noqa: E402
                          need_yaml, skip)

server_bin, bench_bin, testdata = sys.argv[1:4]
prometheus_bin = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else shutil.which("prometheus")
if not prometheus_bin or not os.path.exists(prometheus_bin):
    skip("prometheus not found (Debian package prometheus, see tools/setup.sh)")
need_yaml()
import yaml  # noqa: E402

model = model_dir(testdata)
rules = sorted(glob.glob(os.path.join(REPO, "deploy", "prometheus", "rules", "*.yml")))
recording = [r["record"] for path in rules for g in yaml.safe_load(open(path))["groups"]
             for r in g["rules"] if "record" in r]
adapter = yaml.safe_load(open(os.path.join(REPO, "deploy", "k8s", "prometheus-adapter",
                                           "values.yaml")))["rules"]["custom"]
tmp = tempfile.mkdtemp(prefix="mtla-prom-test-")


def start_prometheus(metrics_port):
    for attempt in range(3):
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": rules,
            "scrape_configs": [{
                "job_name": "mtla-server",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"],
                                    "labels": {"namespace": "mtla-test", "pod": "mtla-server-0"}}],
            }],
        }
        config_path = os.path.join(tmp, "prometheus.yml")
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)
        log = open(os.path.join(tmp, f"prometheus-{attempt}.log"), "w")
        proc = subprocess.Popen([prometheus_bin, f"--config.file={config_path}",
                                 f"--storage.tsdb.path={os.path.join(tmp, f'data-{attempt}')}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                http_get(f"http://127.0.0.1:{port}/-/ready", timeout=1)
                return proc, port
            except OSError:
                time.sleep(0.2)
        proc.kill()
        proc.wait()
        print(open(log.name).read()[-2000:])
    fail("prometheus did not become ready")


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(http_get(url))
    if body["status"] != "success":
        fail(f"query {expr}: {body}")
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


with Server(server_bin, model).wait_serving() as server:
    prom, port = start_prometheus(server.metrics_port)
    try:
        print(f"prometheus on 127.0.0.1:{port}, scraping 127.0.0.1:{server.metrics_port}", flush=True)
        # Wait for the first scrape so that the load's counters have a baseline.
        deadline = time.monotonic() + 20
        while not query(port, 'up{job="mtla-server"} == 1'):
            if time.monotonic() > deadline:
                fail("target never up")
            time.sleep(0.3)
        check(True, "Prometheus scrapes mtla-server (up == 1)")

        report = os.path.join(tmp, "bench.json")
        bench = subprocess.run([bench_bin, f"--address={server.address}", "--num_requests=0",
                                "--duration_seconds=4", "--concurrency=4", "--prompt_len=32",
                                "--output_len=32", f"--json={report}",
                                "--progress_interval_seconds=1"],
                               capture_output=True, text=True, timeout=120)
        print(bench.stdout, bench.stderr[-1500:])
        check(bench.returncode == 0, "mtla-bench load ran")
        result = json.load(open(report))
        output_tokens = result["tokens"]["output"]

        # Recording rules return values.
        must_be_positive = {"mtla:time_to_first_token_seconds:p50_5m",
                            "mtla:time_to_first_token_seconds:p99_5m",
                            "mtla:inter_token_latency_seconds:p50_5m",
                            "mtla:inter_token_latency_seconds:p99_5m",
                            "mtla:e2e_request_latency_seconds:p50_5m",
                            "mtla:e2e_request_latency_seconds:p99_5m",
                            "mtla:generation_tokens:rate5m", "mtla:prompt_tokens:rate5m"}
        # A text model serves no speech segments: their error ratio is 0/0.
        speech_only = {"mtla:segment_errors:ratio_rate5m"}
        deadline = time.monotonic() + 30
        pending = [name for name in recording if name not in speech_only]
        values = {}
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                samples = query(port, name)
                finite = [v for _, v in samples if math.isfinite(v)]
                if finite and (name not in must_be_positive or max(finite) > 0):
                    values[name] = samples
                    pending.remove(name)
            if pending:
                time.sleep(0.5)
        for name in recording:
            print(f"  {name} = {[(m.get('status', ''), v) for m, v in values.get(name, [])]}")
        check(not pending, f"all {len(recording) - len(speech_only)} recording rules that apply "
              f"to a text model return values (missing: {pending})")
        ok_rate = [v for m, v in values["mtla:requests:rate5m"] if m.get("status") == "ok"]
        check(ok_rate and sum(ok_rate) > 0, "mtla:requests:rate5m{status=ok} > 0")
        check(all(m.get("finished_reason") for m, _ in values["mtla:requests:rate5m"]),
              "mtla:requests:rate5m keeps the finished_reason label")
        check(values["mtla:request_errors:ratio_rate5m"][0][1] == 0, "no server errors under load")
        ttft50 = values["mtla:time_to_first_token_seconds:p50_5m"][0][1]
        ttft99 = values["mtla:time_to_first_token_seconds:p99_5m"][0][1]
        check(0 < ttft50 <= ttft99, f"TTFT p50 {ttft50:.4f} s <= p99 {ttft99:.4f} s")
        check(all(m.get("namespace") == "mtla-test" and m.get("model_name") == "llama_mtla_s2"
                  for m, _ in values["mtla:generation_tokens:rate5m"]),
              "recording rules keep the namespace and model_name labels")

        # Every rule evaluates cleanly, alerts included.
        body = json.loads(http_get(f"http://127.0.0.1:{port}/api/v1/rules"))
        evaluated = [r for g in body["data"]["groups"] for r in g["rules"]]
        bad = [(r["name"], r.get("lastError")) for r in evaluated if r.get("health") != "ok"]
        check(len(evaluated) >= len(recording) + 5 and not bad,
              f"{len(evaluated)} rules loaded and healthy ({bad})")
        alerts = json.loads(http_get(f"http://127.0.0.1:{port}/api/v1/alerts"))["data"]["alerts"]
        # Every alert has a `for` of minutes, so none can fire within this test;
        # the latency SLO alerts may be pending when the machine is busy.
        pending = [a["labels"]["alertname"] for a in alerts if a["state"] == "pending"]
        firing = [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"]
        check(not firing, f"no alert fires (pending: {pending})")

        # The prometheus-adapter query behind the HPA, as the adapter would send it.
        for rule in adapter:
            q = (rule["metricsQuery"].replace("<<.Series>>", rule["seriesQuery"].split("{")[0])
                 .replace("<<.LabelMatchers>>", 'namespace="mtla-test",pod=~"mtla-server-0"')
                 .replace("<<.GroupBy>>", "pod"))
            samples = query(port, q)
            check(len(samples) == 1 and samples[0][0].get("pod") == "mtla-server-0",
                  f"adapter query returns one value per pod: {q} -> {samples}")

        # What Prometheus scraped agrees with what the bench received.
        deadline = time.monotonic() + 10
        while True:
            scraped = query(port, 'sum(mtla_generation_tokens_total{job="mtla-server"})')
            if scraped and scraped[0][1] == output_tokens:
                break
            if time.monotonic() > deadline:
                fail(f"scraped generation tokens {scraped} != bench output tokens {output_tokens}")
            time.sleep(0.5)
        check(True, f"scraped mtla_generation_tokens_total == {output_tokens} tokens mtla-bench received")
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
shutil.rmtree(tmp, ignore_errors=True)
print("PASS")
