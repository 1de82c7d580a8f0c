#!/usr/bin/env python3
"""mtla-client against a real mtla-server serving the generated text model
(fixture spm_text_model): `generate --prompt=TEXT` prints the streamed text,
`--json` adds "text" (equal to the scripted model's text), and --prompt with
--prompt_ids is a usage error (exit 2).

usage: client_text_test.py MTLA_SERVER MTLA_CLIENT MODEL_DIR
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy"))
from mtla_testlib import Server, check, skip  # noqa: E402

server_bin, client_bin, model = sys.argv[1:4]
if not os.path.isfile(os.path.join(model, "references.json")):
    skip(f"no generated text model at {model}")
scripted = json.load(open(os.path.join(model, "references.json"), encoding="utf-8"))["scripted"]

with Server(server_bin, model, args=["--device=cpu", "--kv_cache_mb=8"]) as server:
    server.wait_serving()

    def client(*args):
        return subprocess.run([client_bin, f"--address={server.address}", "--timeout=30", *args],
                              capture_output=True, text=True, timeout=60)

    out = client("--json", "generate", f"--prompt={scripted['prompt']}", "--max_new_tokens=32")
    check(out.returncode == 0, f"generate --prompt --json exits 0 ({out.stderr.strip()})")
    result = json.loads(out.stdout)
    check(result["text"] == scripted["generated_text"] and result["token_ids"] == scripted["generated_ids"],
          f"--json text {result['text']!r} == {scripted['generated_text']!r}, with the scripted ids")
    check(result["prompt_tokens"] == len(scripted["prompt_ids"]) + 1, "prompt encoded with BOS first")

    out = client("generate", f"--prompt={scripted['prompt']}", "--max_new_tokens=32")
    check(out.returncode == 0 and out.stdout.splitlines()[0] == scripted["generated_text"],
          f"generate --prompt prints the text: {out.stdout.splitlines()[:1]}")

    out = client("generate", "--prompt=x", "--prompt_ids=1 2")
    check(out.returncode == 2, f"--prompt with --prompt_ids is a usage error ({out.returncode})")
print("PASS")
