#!/usr/bin/env python3
"""mtla-bench --scenario speech against a real mtla-server on loopback, serving
a small speech-translation model with random weights written by
bench/speech/make_random_st_model.py: real-time and as-fast-as-possible
streams, closed and open loop, an SLO on chunk latency, and a server that
rejects streams. The JSON reports must hold the speech metrics with sane
values, and the server's audio counter must agree with the bench.

usage: bench_speech_test.py MTLA_SERVER MTLA_BENCH
"""
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import REPO, Server, check, fail, metric_samples, skip  # noqa: E402

server_bin, bench_bin = sys.argv[1:3]
tmp = tempfile.mkdtemp(prefix="mtla-bench-speech-test-")
try:
    import numpy  # noqa: F401  (make_random_st_model.py needs it)
except ImportError:
    skip("numpy is not installed (Debian package python3-numpy): cannot write the random model")

model = os.path.join(tmp, "st_small")
subprocess.run([sys.executable, os.path.join(REPO, "bench", "speech", "make_random_st_model.py"),
                model, "--dims", "small", "--seed", "3"], check=True, timeout=120)


def write_wav(path, seconds, rate):
    """Noise bursts separated by a quiet gap: speech-like energy for the endpointer."""
    rng = random.Random(seconds * rate)
    n = int(seconds * rate)
    frames = bytearray()
    for i in range(n):
        t = i / rate
        loud = not (0.45 * seconds <= t < 0.55 * seconds)
        amp = 6000 if loud else 20
        v = amp * math.sin(2 * math.pi * 220 * t) + rng.uniform(-amp, amp) / 4
        frames += struct.pack("<h", int(max(-32768, min(32767, v))))
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return path


wav_a = write_wav(os.path.join(tmp, "a_16k.wav"), 1.0, 16000)
wav_b = write_wav(os.path.join(tmp, "b_16k.wav"), 0.6, 16000)
wav_8k = write_wav(os.path.join(tmp, "c_8k.wav"), 0.5, 8000)
SPEECH_METRICS = ("chunk_latency_ms", "rtf_x", "ttft_ms", "final_after_audio_ms", "e2e_ms")


def bench(address, name, *args, timeout=90, expect_rc=0):
    out = os.path.join(tmp, f"{name}.json")
    cmd = [bench_bin, f"--address={address}", "--scenario=speech", f"--json={out}",
           "--wait_for_ready_seconds=10", "--progress_interval_seconds=0.5", *args]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    print(proc.stdout)
    print(proc.stderr[-2000:])
    if expect_rc is not None and proc.returncode != expect_rc:
        fail(f"{name}: mtla-bench exited {proc.returncode}, expected {expect_rc}")
    with open(out) as f:
        return json.load(f), proc


def check_summary(report, key, name):
    s = report["metrics"][key]
    check(s["count"] > 0, f"{name}: {key} has samples")
    order = [s["min"], s["p50"], s["p90"], s["p95"], s["p99"], s["max"]]
    check(all(a <= b + 1e-9 for a, b in zip(order, order[1:])) and all(map(math.isfinite, order)),
          f"{name}: {key} min <= p50 <= p90 <= p95 <= p99 <= max ({order})")
    check(s["min"] - 1e-9 <= s["mean"] <= s["max"] + 1e-9, f"{name}: {key} mean within [min, max]")


def check_speech_report(r, name, expect_all_ok=True):
    req = r["requests"]
    check(r["scenario"] == "speech-translation", f"{name}: scenario recorded")
    if expect_all_ok:
        check(req["failed"] == 0 and req["unfinished"] == 0 and not r["errors"],
              f"{name}: no errors ({r['errors']})")
    check(req["completed"] + req["failed"] + req["unfinished"] == req["issued"],
          f"{name}: completed + failed + unfinished == issued ({req})")
    check(req["completed"] > 0, f"{name}: some streams completed")
    for key in SPEECH_METRICS:
        check_summary(r, key, name)
    m = r["metrics"]
    done = req["completed"]
    check(m["e2e_ms"]["count"] == done and m["rtf_x"]["count"] == done
          and m["final_after_audio_ms"]["count"] == done,
          f"{name}: one E2E, RTF and final-after-audio sample per completed stream")
    check(m["ttft_ms"]["count"] <= done, f"{name}: at most one time to first text per stream")
    check(r["tokens"]["output"] > 0, f"{name}: final results carried tokens")
    check(0 < m["rtf_x"]["p50"] < 20, f"{name}: RTF p50 {m['rtf_x']['p50']:.4f} in (0, 20)")
    check(0 < m["chunk_latency_ms"]["min"] and m["chunk_latency_ms"]["p50"] < 5000,
          f"{name}: chunk latency p50 {m['chunk_latency_ms']['p50']:.2f} ms in (0, 5 s)")
    check(m["ttft_ms"]["max"] <= m["e2e_ms"]["max"] + 1e-6
          and m["final_after_audio_ms"]["max"] <= m["e2e_ms"]["max"] + 1e-6,
          f"{name}: time to first text and final-after-audio within E2E")
    check(m["e2e_ms"]["max"] / 1e3 <= r["duration_seconds"] + 1e-6,
          f"{name}: no stream longer than the run")


def chunks_per_stream(r):
    return [f["chunks"] for f in r["config"]["scenario"]["wav"]]


with Server(server_bin, model).wait_serving() as server:
    # 1. Real-time pace, closed loop: 4 streams of a 1.0 s and a 0.6 s file,
    # two at a time, 100 ms chunks (10 and 6 chunks).
    r, proc = bench(server.address, "realtime", f"--wav={wav_a},{wav_b}", "--chunk_ms=100",
                    "--pace=realtime", "--concurrency=2", "--num_requests=4", "--max_tokens=6",
                    "--warmup_requests=1")
    check_speech_report(r, "realtime")
    check(chunks_per_stream(r) == [10, 6], f"realtime: chunks per file {chunks_per_stream(r)}")
    check(r["metrics"]["chunk_latency_ms"]["count"] == 2 * (10 + 6),
          "realtime: one chunk-latency sample per chunk sent")
    # Chunk k leaves k * 100 ms after the first: a stream lasts at least its
    # last chunk's offset (0.9 s for the 1.0 s file, 0.5 s for the other).
    check(r["metrics"]["e2e_ms"]["min"] >= 500 - 1 and r["metrics"]["e2e_ms"]["max"] >= 900 - 1,
          f"realtime: paced ({r['metrics']['e2e_ms']['min']:.0f}..{r['metrics']['e2e_ms']['max']:.0f} ms)")
    cfg = r["config"]
    check(cfg["scenario"]["pace"] == "realtime" and cfg["scenario"]["chunk_ms"] == 100
          and cfg["mode"] == "closed_loop" and cfg["concurrency"] == 2,
          "realtime: settings recorded")
    check("Chunk latency (ms)" in proc.stdout and "Real-time factor (x)" in proc.stdout,
          "realtime: speech metrics in the table")
    # The server saw exactly the audio the bench sent (warm-up included).
    audio = sum(v for _, v in metric_samples(server.metrics_text())["mtla_audio_seconds_total"])
    check(abs(audio - (1 * 1.0 + 2 * 1.0 + 2 * 0.6)) < 0.01,
          f"server counted {audio:.3f} s of audio == 4.2 s sent (warm-up included)")

    # 2. As fast as possible, open loop (Poisson), three files, one at 8 kHz.
    r, _ = bench(server.address, "fast", f"--wav={wav_a},{wav_b},{wav_8k}", "--chunk_ms=40",
                 "--pace=fast", "--request_rate=20", "--num_requests=9", "--max_tokens=4",
                 "--seed=5")
    check_speech_report(r, "fast")
    check(chunks_per_stream(r) == [25, 15, 13], f"fast: chunks per file {chunks_per_stream(r)}")
    check(r["metrics"]["chunk_latency_ms"]["count"] == 3 * (25 + 15 + 13),
          "fast: one chunk-latency sample per chunk sent")
    check(r["config"]["mode"] == "open_loop" and r["config"]["scenario"]["pace"] == "fast",
          "fast: open loop and pace recorded")

    # 3. Goodput against a chunk-latency SLO: impossible, then generous.
    r, _ = bench(server.address, "slo_tight", f"--wav={wav_b}", "--pace=fast", "--num_requests=3",
                 "--max_tokens=4", "--slo_chunk_ms=0.000001")
    check(r["goodput"]["good_requests"] == 0 and r["goodput"]["slo"] == {"chunk_latency_ms": 1e-6},
          "slo_tight: an impossible chunk SLO leaves no goodput")
    r, _ = bench(server.address, "slo_loose", f"--wav={wav_b}", "--pace=fast", "--num_requests=3",
                 "--max_tokens=4", "--slo_chunk_ms=60000")
    check(r["goodput"]["good_requests"] == 3, "slo_loose: every stream meets a 60 s chunk SLO")
    check(server.stop() == 0, "mtla-server drained and exited 0")

# 4. A server that can run one segment and queue none: rejected streams are
# counted by status code, like text requests.
with Server(server_bin, model, args=["--max_running=1", "--max_queued=0"]).wait_serving() as server:
    r, _ = bench(server.address, "rejected", f"--wav={wav_a}", "--pace=fast", "--concurrency=8",
                 "--num_requests=24", "--max_tokens=40", expect_rc=None)
    req = r["requests"]
    check(req["failed"] == sum(r["errors"].values()), f"rejected: failed == sum of errors ({r['errors']})")
    check(req["completed"] + req["failed"] == req["issued"] == 24, "rejected: every stream accounted for")
    check(r["errors"].get("RESOURCE_EXHAUSTED", 0) > 0 and set(r["errors"]) == {"RESOURCE_EXHAUSTED"},
          f"rejected: RESOURCE_EXHAUSTED counted, nothing else ({r['errors']})")
print("PASS")
