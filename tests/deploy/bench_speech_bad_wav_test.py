#!/usr/bin/env python3
"""mtla-bench --scenario speech refuses bad audio and bad speech flags up
front: exit code 2, a message naming the file (or flag) and the problem, and
nothing contacted (the address given is unreachable on purpose).

usage: bench_speech_bad_wav_test.py MTLA_BENCH
"""
import os
import subprocess
import sys
import tempfile
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import check  # noqa: E402

bench_bin = sys.argv[1]
tmp = tempfile.mkdtemp(prefix="mtla-bench-bad-wav-")


def wav(name, channels=1, width=2, rate=16000, frames=1600):
    path = os.path.join(tmp, name)
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\0" * (frames * channels * width))
    return path


def run(*args):
    cmd = [bench_bin, "--address=127.0.0.1:1", "--wait_for_ready_seconds=0", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    print("$", " ".join(cmd), "->", proc.returncode, proc.stderr.strip(), flush=True)
    return proc


good = wav("good.wav")
not_wav = os.path.join(tmp, "notes.wav")
with open(not_wav, "w") as f:
    f.write("this is text, not audio\n")
truncated = os.path.join(tmp, "truncated.wav")
with open(good, "rb") as f:
    data = f.read()
with open(truncated, "wb") as f:
    f.write(data[:30])

cases = [
    (os.path.join(tmp, "missing.wav"), "no such file"),
    (not_wav, "not a RIFF/WAVE file"),
    (truncated, "truncated.wav: "),
    (wav("stereo.wav", channels=2), "only mono"),
    (wav("pcm8.wav", width=1), "only 16-bit PCM"),
    (wav("pcm32.wav", width=4), "only 16-bit PCM"),
    (wav("rate96k.wav", rate=96000), "sample rate 96000 Hz is outside"),
    (wav("empty.wav", frames=0), "holds no audio samples"),
    (tmp, "is a directory"),
]
for path, problem in cases:
    proc = run("--scenario=speech", f"--wav={good},{path}", "--num_requests=1")
    check(proc.returncode == 2 and f"--wav {path}" in proc.stderr and problem in proc.stderr
          and "not serving" not in proc.stderr,
          f"{os.path.basename(path)}: exit 2 naming the file and '{problem}'")

flag_cases = [
    (["--scenario=speech"], "--scenario speech needs --wav"),
    (["--scenario=speech", f"--wav={good}", "--pace=slow"], "--pace must be realtime or fast"),
    (["--scenario=speech", f"--wav={good}", "--chunk_ms=0"], "--chunk_ms must be >= 1"),
    (["--scenario=speech", f"--wav={good}", "--max_tokens=-1"], "--max_tokens must be >= 0"),
    (["--scenario=audio"], "--scenario must be text or speech"),
    ([f"--wav={good}"], "--wav is for --scenario speech"),
]
for args, message in flag_cases:
    proc = run(*args)
    check(proc.returncode == 2 and message in proc.stderr, f"{' '.join(args)}: exit 2, '{message}'")

# A good file gets past the checks and only then fails on the unreachable server.
proc = run("--scenario=speech", f"--wav={good}", "--num_requests=1")
check(proc.returncode == 1 and "not serving" in proc.stderr, "good WAV: reaches the server check")
print("PASS")
