"""The command-line tools' conventions, against a real mtla-server on loopback.

Every tool: --version prints "TOOL <project version> (<build type> build,
<compiler>)"; --help lists the tool's own flags (not "No flags matched") and
exits 0;
flags are snake_case absl flags taking --flag=value and --flag value.
mtla-client: generate|translate|info|health, each with plain and --json output
(one JSON object, also for an RPC error), gRPC status names in errors
("rpc failed: INVALID_ARGUMENT: ..."), exit codes 0/1/2, old dashed flags
rejected.

usage: cli_test.py BUILD_TYPE SPEECH_MODEL_DIR TESTDATA_DIR TOOL=PATH...
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy"))
from mtla_testlib import Server, check  # noqa: E402

build_type, speech_model, testdata = sys.argv[1:4]
tools = dict(arg.split("=", 1) for arg in sys.argv[4:])

# What --help must show per tool: the file its flags are listed under and a
# few important flags.
HELP = {
    "mtla-server": ("server/main.cc", ["--model_dir", "--listen", "--metrics_listen", "--device",
                                       "--tls_cert_file", "--drain_grace_seconds"]),
    "mtla-client": ("tools/client/main.cc", ["--address", "--json", "--prompt_ids",
                                             "--max_new_tokens", "--chunk_ms", "--service",
                                             "--tls_ca_file", "--tls_server_name"]),
    "mtla-bench": ("tools/bench/main.cc", ["--address", "--concurrency", "--output_len",
                                           "--tls_ca_file"]),
    "mtla-conformance": ("tools/conformance/main.cc", ["--device", "--dtype"]),
    "mtla-features": ("tools/features/main.cc", ["--list", "--out", "--cmvn"]),
    "mtla-generate": ("tools/generate/main.cc", ["--model", "--prompt", "--max_new_tokens",
                                                 "--write_random_model"]),
    "speech_stream_bench": ("bench/speech/speech_stream_bench.cc", ["--wav", "--chunk_ms",
                                                                    "--max_tokens"]),
}


def run(*cmd, timeout=120):
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    print("$", " ".join(cmd), "->", proc.returncode, proc.stdout.strip()[-300:],
          proc.stderr.strip()[-300:], flush=True)
    return proc


for tool, path in sorted(tools.items()):
    proc = run(path, "--version")
    want = re.compile(rf"^{re.escape(tool)} \d+\.\d+\.\d+ \({re.escape(build_type)}[^)]* build, "
                      r"(GCC|Clang) \d+\.\d+\.\d+\)$")
    check(proc.returncode == 0 and want.match(proc.stdout.strip()),
          f"{tool} --version names the version, the {build_type} build and the compiler")
    proc = run(path, "--help")
    text = proc.stdout + proc.stderr
    own_file, flags = HELP[tool]
    check(proc.returncode == 0 and "No flags matched" not in text
          and f"Flags from {own_file}:" in proc.stdout,
          f"{tool} --help: exit 0, lists the flags of {own_file} on stdout")
    missing = [f for f in flags if f"    {f} (" not in text]
    check(not missing, f"{tool} --help shows {', '.join(flags)} (missing: {missing})")
    check(not re.search(r"^\s+--[a-z0-9]+-[a-z0-9-]+ \(", text, re.M),
          f"{tool}: no dashed flag names")

client = tools["mtla-client"]
sample = os.path.join(speech_model, "sample.wav")

with Server(tools["mtla-server"], speech_model, ["--device=cpu", "--kv_cache_mb=64"],
            metrics_listen="").wait_serving() as server:
    base = (client, f"--address={server.address}", "--timeout", "60")

    # health: plain, --json, per service, an unknown service by name.
    proc = run(*base, "health")
    check(proc.returncode == 0 and proc.stdout.strip() == "SERVING", "health: SERVING")
    proc = run(*base, "--json", "health", "--service", "mtla.v1.SpeechTranslation")
    check(proc.returncode == 0 and json.loads(proc.stdout) ==
          {"service": "mtla.v1.SpeechTranslation", "status": "SERVING"},
          "health --json --service mtla.v1.SpeechTranslation")
    proc = run(*base, "health", "--service=mtla.v1.NoSuchService")
    check(proc.returncode == 1 and "rpc failed: NOT_FOUND: " in proc.stderr,
          "health of an unknown service: exit 1, NOT_FOUND by name")
    proc = run(*base, "--json", "health", "--service=mtla.v1.NoSuchService")
    check(proc.returncode == 1 and json.loads(proc.stdout)["error"]["code"] == "NOT_FOUND",
          "health --json of an unknown service: a JSON error object")

    # info: plain and --json.
    proc = run(*base, "info")
    check(proc.returncode == 0 and 'architecture: "s2t-mtla"' in proc.stdout, "info: plain")
    proc = run(*base, "--json", "info")
    info = json.loads(proc.stdout) if proc.returncode == 0 else {}
    check(info.get("architecture") == "s2t-mtla" and info.get("name") == "en-de-synthetic"
          and info.get("vocab_size", 0) > 0, "info --json: one ModelInfo object")

    # generate: both flag forms give the same request; --json; status names.
    a = run(*base, "--json", "generate", "--prompt_ids=1 5 9", "--max_new_tokens=4",
            "--ignore_eos")
    b = run(*base, "generate", "--json", "--prompt_ids", "1 5 9", "--max_new_tokens", "4",
            "--ignore_eos")
    ga, gb = json.loads(a.stdout), json.loads(b.stdout)
    check(a.returncode == 0 and len(ga["token_ids"]) == 4 and ga["token_ids"] == gb["token_ids"],
          "generate: --flag=value and --flag value, flags before and after the command")
    proc = run(*base, "generate", "--prompt_ids=1 5 9", "--max_new_tokens=2")
    check(proc.returncode == 0 and "finish=" in proc.stdout, "generate: plain")
    proc = run(*base, "generate", "--prompt_ids=1 5 9", "--max_new_tokens=1000000")
    check(proc.returncode == 1 and "rpc failed: INVALID_ARGUMENT: " in proc.stderr,
          "generate error: INVALID_ARGUMENT by name, exit 1")
    proc = run(*base, "--json", "generate", "--prompt_ids=1 5 9", "--max_new_tokens=1000000")
    err = json.loads(proc.stdout)["error"] if proc.returncode == 1 else {}
    check(err.get("code") == "INVALID_ARGUMENT" and "max_new_tokens" in err.get("message", ""),
          "generate --json error: {\"error\": {\"code\": \"INVALID_ARGUMENT\", ...}}")

    # translate: plain and --json.
    proc = run(*base, "translate", sample, "--chunk_ms=200")
    check(proc.returncode == 0 and re.search(r"^\[0\] ", proc.stdout, re.M), "translate: plain")
    proc = run(*base, "--json", "translate", "--chunk_ms", "200", sample)
    out = json.loads(proc.stdout)
    finals = [r for r in out["results"] if r["final"]]
    check(proc.returncode == 0 and finals and finals[0]["text"], "translate --json: final results")
    check(all(r["kind"] == "RESULT_KIND_FINAL" and len(r["alternatives"]) == 1 for r in finals)
          and out["metadata"].get("model"),
          "translate --json: kinds, alternatives and the call's metadata")

    # Usage errors.
    proc = run(*base, "generate", "--max-new-tokens", "3")
    check(proc.returncode != 0 and "max-new-tokens" in proc.stderr,
          "the old dashed flags are rejected by name")
    proc = run(*base, "--no_such_flag")
    check(proc.returncode == 1 and "no_such_flag" in proc.stderr, "an unknown flag: exit 1, named")
    check(run(*base).returncode == 2, "no command: exit 2")
    check(run(*base, "bogus").returncode == 2, "unknown command: exit 2")
    check(run(*base, "translate").returncode == 2, "translate without a WAV: exit 2")

# Nothing listens here: UNAVAILABLE by name.
proc = run(client, "--address=127.0.0.1:1", "--timeout=2", "info")
check(proc.returncode == 1 and re.search(r"rpc failed: (UNAVAILABLE|DEADLINE_EXCEEDED)", proc.stderr),
      "no server: the status by name")
print("PASS")
