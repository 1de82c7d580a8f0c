#!/usr/bin/env python3
"""The README's demo as a test: mtla-server on the default model translates the
bundled held-out utterance (sample.wav) into its reference German (sample.txt),
streamed in 200 ms chunks, as tools/run.sh does; then drains on SIGTERM."""
import argparse
import json
import signal
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    expected = dict(line.rstrip("\n").split("\t", 1)
                    for line in open(f"{args.model}/sample.txt", encoding="utf-8"))["german"]
    address = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen([args.server, f"--model_dir={args.model}", f"--listen={address}",
                               f"--metrics_listen=127.0.0.1:{free_port()}",
                               "--drain_grace_seconds=5"])
    try:
        for _ in range(300):
            if subprocess.run([args.client, "--address", address, "health"],
                              capture_output=True).returncode == 0:
                break
            if server.poll() is not None:
                print(f"FAIL: mtla-server exited with {server.returncode}")
                return 1
            time.sleep(0.1)
        out = subprocess.run([args.client, "--address", address, "--json", "translate",
                              f"{args.model}/sample.wav", "--chunk_ms", "200"],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            print(f"FAIL: mtla-client exited {out.returncode}: {out.stderr}")
            return 1
        finals = [r["text"] for r in json.loads(out.stdout)["results"] if r["final"]]
        got = " ".join(finals).strip()
        print(f"served:    {got}\nreference: {expected}")
        if got != expected:
            print("FAIL: the served translation differs from the reference")
            return 1
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    if code != 0:
        print(f"FAIL: mtla-server exited {code} after SIGTERM")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
