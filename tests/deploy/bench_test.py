#!/usr/bin/env python3
"""mtla-bench against a real mtla-server on loopback: closed loop, open loop
(Poisson and gamma), a JSONL workload, a duration bound, and a server that
rejects requests; the JSON reports must be complete and consistent, and the
server's own request counter must agree with the bench.

usage: bench_test.py MTLA_SERVER MTLA_BENCH TESTDATA_DIR
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import Server, check, fail, metric_samples, model_dir  # noqa: E402

server_bin, bench_bin, testdata = sys.argv[1:4]
model = model_dir(testdata)
tmp = tempfile.mkdtemp(prefix="mtla-bench-test-")


def bench(address, name, *args, timeout=60, expect_rc=0):
    out = os.path.join(tmp, f"{name}.json")
    cmd = [bench_bin, f"--address={address}", f"--json={out}", "--wait_for_ready_seconds=10",
           "--progress_interval_seconds=0.5", *args]
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - start
    print(proc.stdout)
    print(proc.stderr[-2000:])
    if expect_rc is not None and proc.returncode != expect_rc:
        fail(f"{name}: mtla-bench exited {proc.returncode}, expected {expect_rc}")
    with open(out) as f:
        return json.load(f), elapsed, proc


def requests_counted(server, status, want, seconds=10):
    """The server's mtla_requests_total{status=...} once it equals `want`, or
    when `seconds` have passed. The server counts a call when the call is
    done on its side, which can follow the client's receipt of the status
    (docs/reliability.md, finding 11), so a count read at once can lag."""
    deadline = time.monotonic() + seconds
    while True:
        count = sum(v for labels, v in metric_samples(server.metrics_text())["mtla_requests_total"]
                    if labels.get("status") == status)
        if count == want or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def check_summary(report, key, name):
    s = report["metrics"][key]
    if s["count"] == 0:
        fail(f"{name}: {key} has no samples")
    order = [s["min"], s["p50"], s["p90"], s["p95"], s["p99"], s["max"]]
    check(all(a <= b + 1e-9 for a, b in zip(order, order[1:])),
          f"{name}: {key} min <= p50 <= p90 <= p95 <= p99 <= max ({order})")
    check(s["min"] <= s["mean"] <= s["max"] and all(math.isfinite(v) for v in order),
          f"{name}: {key} mean within [min, max]")


def check_report(report, name, output_len, expect_all_ok=True):
    req = report["requests"]
    if expect_all_ok:
        check(req["failed"] == 0 and not report["errors"], f"{name}: no errors ({report['errors']})")
    check(req["completed"] + req["failed"] + req["unfinished"] == req["issued"],
          f"{name}: completed + failed + unfinished == issued ({req})")
    check(req["completed"] > 0, f"{name}: some requests completed")
    if output_len:
        check(report["tokens"]["output"] == req["completed"] * output_len,
              f"{name}: output tokens == completed * {output_len} (ignore_eos)")
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        check_summary(report, key, name)
    m = report["metrics"]
    check(m["ttft_ms"]["count"] == req["completed"] and m["e2e_ms"]["count"] == req["completed"],
          f"{name}: one TTFT and one E2E sample per completed request")
    check(0 < m["ttft_ms"]["p50"] <= m["e2e_ms"]["p50"] + 1e-9, f"{name}: 0 < TTFT p50 <= E2E p50")
    check(m["e2e_ms"]["max"] / 1e3 <= report["duration_seconds"] + 1e-6,
          f"{name}: no request longer than the run")
    tp = report["throughput"]
    d = report["duration_seconds"]
    check(d > 0, f"{name}: duration {d:.3f} s > 0")
    check(abs(tp["requests_per_second"] - req["completed"] / d) < 1e-6 * max(1, tp["requests_per_second"]),
          f"{name}: request throughput = completed / duration")
    check(abs(tp["output_tokens_per_second"] - report["tokens"]["output"] / d) < 1e-6 * max(1, tp["output_tokens_per_second"]),
          f"{name}: token throughput = output tokens / duration")
    g = report["goodput"]
    check(0 <= g["fraction"] <= 1 and g["good_requests"] <= req["completed"],
          f"{name}: goodput within the completed requests")


# 1. Closed loop, open loop (Poisson, gamma) and a JSONL workload on one server.
with Server(server_bin, model).wait_serving() as server:
    r, elapsed, proc = bench(server.address, "closed", "--num_requests=24", "--concurrency=4",
                             "--prompt_len=16", "--output_len=8", "--slo_ttft_ms=60000",
                             "--slo_tpot_ms=0.000001", "--warmup_requests=2")
    check(r["requests"]["issued"] == 24 and r["requests"]["completed"] == 24, "closed: 24 of 24 ok")
    check_report(r, "closed", 8)
    check(r["model"]["vocab_size"] == 97 and r["model"]["name"] == "llama_mtla_s2",
          "closed: model info from Models.GetModelInfo")
    check(r["config"]["mode"] == "closed_loop" and r["config"]["concurrency"] == 4, "closed: config recorded")
    slo = r["goodput"]["slo"]
    check(sorted(slo) == ["tpot_ms", "ttft_ms"] and math.isclose(slo["ttft_ms"], 60000)
          and math.isclose(slo["tpot_ms"], 1e-6) and r["goodput"]["good_requests"] == 0,
          "closed: an impossible TPOT SLO leaves no goodput")
    check("Time to first token (ms)" in proc.stdout and "Goodput" in proc.stdout, "closed: table printed")
    check("[mtla-bench]" in proc.stderr, "closed: progress line on stderr")
    # The server counted exactly the bench's requests (warm-up included).
    ok = requests_counted(server, "ok", 26)
    check(ok == 26, f"server counted {ok} ok requests == 24 + 2 warm-up")

    r, elapsed, _ = bench(server.address, "poisson", "--num_requests=30", "--request_rate=40",
                          "--arrival=poisson", "--prompt_len=8", "--output_len=4", "--seed=7")
    check_report(r, "poisson", 4)
    check(r["config"]["mode"] == "open_loop" and "poisson" in r["load"], "poisson: open loop recorded")
    # 30 arrivals at 40/s take ~0.75 s on average; far below 30 s even if slow.
    check(r["duration_seconds"] < 30, "poisson: bounded")

    r, _, _ = bench(server.address, "gamma", "--num_requests=20", "--request_rate=50",
                    "--arrival=gamma", "--burstiness=0.3", "--max_concurrency=3", "--prompt_len=8",
                    "--output_len=4", "--range_ratio=0.5")
    check_report(r, "gamma", None)
    check("burstiness 0.3" in r["load"], "gamma: burstiness recorded")

    dataset = os.path.join(tmp, "requests.jsonl")
    with open(dataset, "w") as f:
        f.write('{"prompt_token_ids": [1, 17, 42], "max_new_tokens": 5}\n\n')
        f.write('{"prompt_len": 20, "output_len": 5}\n')
    r, _, _ = bench(server.address, "jsonl", f"--dataset={dataset}", "--num_requests=6",
                    "--concurrency=2")
    check_report(r, "jsonl", 5)
    check(r["tokens"]["input"] == 3 * (3 + 20), "jsonl: prompt tokens from the file (3 x (3 + 20))")

    # Lengths beyond the model's context are refused before sending anything.
    proc = subprocess.run([bench_bin, f"--address={server.address}", "--prompt_len=500",
                           "--output_len=100", "--num_requests=1"], capture_output=True, text=True,
                          timeout=30)
    check(proc.returncode == 2 and "context of 512" in proc.stderr,
          "prompt + output over the context is a usage error")
    code = server.stop()
    check(code == 0, "mtla-server drained and exited 0")

# 2. A server that can hold one request and queue none: errors by status code.
with Server(server_bin, model, args=["--max_running=1", "--max_queued=0"]).wait_serving() as server:
    r, _, _ = bench(server.address, "rejected", "--num_requests=16", "--concurrency=8",
                    "--prompt_len=8", "--output_len=64")
    check(r["errors"].get("RESOURCE_EXHAUSTED", 0) > 0,
          f"rejected: RESOURCE_EXHAUSTED counted ({r['errors']})")
    check(r["requests"]["failed"] == sum(r["errors"].values()), "rejected: failed == sum of errors")
    check_report(r, "rejected", 64, expect_all_ok=False)
    rejected = requests_counted(server, "resource_exhausted", r["errors"]["RESOURCE_EXHAUSTED"])
    check(rejected == r["errors"]["RESOURCE_EXHAUSTED"],
          f"server counted {rejected} resource_exhausted == bench's")

# 3. A duration bound that cuts requests short: they are cancelled and reported
# as unfinished, and the bench stops by itself. (Separate server: see below.)
with Server(server_bin, model).wait_serving() as server:
    r, elapsed, proc = bench(server.address, "duration", "--num_requests=0", "--duration_seconds=2",
                             "--concurrency=4", "--prompt_len=8", "--output_len=160",
                             "--drain_timeout_seconds=0", expect_rc=None)
    # On a busy machine no request may finish in 2 s: then the exit code is 1.
    check(proc.returncode == (0 if r["requests"]["completed"] > 0 else 1),
          f"duration: exit code {proc.returncode} for {r['requests']['completed']} completed")
    if r["requests"]["completed"] > 0:
        check_report(r, "duration", 160)
    check(elapsed < 20, f"duration: a 2 s run stopped by itself ({elapsed:.1f} s)")
    check(r["requests"]["unfinished"] >= 1, "duration: requests cut short are reported unfinished")
    # mtla-server's drain currently waits forever on streams the client
    # cancelled (reported to the server's owners); don't let that hang this test.
    try:
        server.proc.send_signal(15)
        server.proc.wait(10)
    except Exception:  # noqa: BLE001
        print("NOTE: mtla-server did not exit within 10 s of SIGTERM after client "
              "cancellations (server-side issue, not mtla-bench's); killed", flush=True)
        server.proc.kill()
        server.proc.wait()

# 4. No server at all: a clear failure, bounded.
proc = subprocess.run([bench_bin, "--address=127.0.0.1:1", "--wait_for_ready_seconds=1",
                       "--num_requests=1"], capture_output=True, text=True, timeout=30)
check(proc.returncode == 1 and "not serving" in proc.stderr, "unreachable server: exit 1, message")
print("PASS")
