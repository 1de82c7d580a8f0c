"""examples/python/streaming_translate.py, with Debian's python3-grpcio and
stubs generated at test time, against a real mtla-server on loopback serving
the default model: interim and final results for the model's sample.wav, the
final text as the model's sample.txt expects, and status names on errors.

usage: python_client_test.py MTLA_SERVER MODEL_DIR
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "deploy"))
from mtla_testlib import REPO, Server, check, skip  # noqa: E402

server_bin, model = sys.argv[1:3]
example = os.path.join(REPO, "examples", "python", "streaming_translate.py")
try:
    import grpc  # noqa: F401
except ImportError:
    skip(f"{sys.executable} cannot import grpc (Debian package python3-grpcio, tools/setup.sh)")
for tool in ("protoc", "grpc_python_plugin"):
    if not shutil.which(tool):
        skip(f"{tool} not found (protobuf-compiler, protobuf-compiler-grpc)")

expected = None
sample_txt = os.path.join(model, "sample.txt")
if os.path.isfile(sample_txt):
    # "english\t...", "german\t...": the target language's line is the last.
    expected = open(sample_txt).read().strip().splitlines()[-1].split("\t", 1)[-1].strip()


def run_example(*args):
    proc = subprocess.run([sys.executable, example, *args, "--stubs_dir", stubs],
                          capture_output=True, text=True, timeout=120)
    print("$ streaming_translate.py", " ".join(args), "->", proc.returncode, flush=True)
    print(proc.stdout, proc.stderr, flush=True)
    return proc


with tempfile.TemporaryDirectory() as stubs, \
        Server(server_bin, model, ["--device=cpu", "--kv_cache_mb=64"],
               metrics_listen="").wait_serving() as server:
    wav = os.path.join(model, "sample.wav")
    proc = run_example(wav, "--address", server.address, "--chunk_ms", "100", "--realtime")
    lines = proc.stdout.splitlines()
    finals = [l for l in lines if l.startswith("final ")]
    interims = [l for l in lines if l.startswith("interim ")]
    check(proc.returncode == 0 and finals, "final results printed")
    check(interims, "interim results printed while audio streams at real-time pace")
    check(lines and lines[0] == "metadata: model %s, en -> de" % os.path.basename(model.rstrip("/")),
          "the call's metadata (model, languages) comes first")
    check(all(" (stability " in l for l in interims), "interim lines show their stability")
    check(os.path.isfile(os.path.join(stubs, "mtla", "v1", "speech_translation_pb2_grpc.py"))
          and not os.path.exists(os.path.join(stubs, "grpc")),
          "only the mtla stubs were generated (nothing shadows grpcio's grpc package)")
    text = " ".join(l.split(": ", 1)[1].rsplit(" | ", 1)[0] for l in finals)
    if expected is not None:
        print(f"served:   {text}\nexpected: {expected}")
        check(text == expected, "the final text is the model's sample.txt")

    proc = run_example(wav, "--address", server.address, "--no_interim", "--chunk_ms", "250")
    check(proc.returncode == 0 and "final " in proc.stdout and "interim " not in proc.stdout,
          "--no_interim: final results only")

    # Beam 4: the n-best under the final line; the transcript holds every
    # message of the call in order, metadata first among the responses.
    log = os.path.join(stubs, "transcript.jsonl")
    proc = run_example(wav, "--address", server.address, "--no_interim", "--beam_size", "4",
                       "--transcript", log)
    alternatives = [l for l in proc.stdout.splitlines() if l.strip().startswith("alternative ")]
    check(proc.returncode == 0 and len(alternatives) == 4, "--beam_size 4: four alternatives")
    import json
    entries = [json.loads(l) for l in open(log)]
    responses = [e["response"] for e in entries if "response" in e]
    check("config" in entries[0].get("request", {}) and entries[-1] == {"status": {"code": "OK"}},
          "the transcript starts with the config request and ends with the status")
    check(responses and "metadata" in responses[0]
          and responses[0]["metadata"].get("source_language") == "en",
          "the transcript's first response is the metadata")
    results = [r["result"] for r in responses if "result" in r]
    check(results and [r.get("kind") for r in results] == ["RESULT_KIND_FINAL"] * len(results)
          and all(len(r.get("alternatives", [])) == 4 for r in results),
          "beam 4: final results only, each with its four alternatives")

    # A language the model does not serve: INVALID_ARGUMENT naming the field.
    proc = run_example(wav, "--address", server.address, "--source_language", "fr")
    check(proc.returncode == 1 and "INVALID_ARGUMENT: config.source_language" in proc.stderr,
          "an unserved language: exit 1, INVALID_ARGUMENT naming config.source_language")

    # A sample rate outside the server's range: INVALID_ARGUMENT by name.
    bad = os.path.join(stubs, "bad_rate.wav")
    import wave
    with wave.open(bad, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(4000)
        w.writeframes(b"\0\0" * 4000)
    proc = run_example(bad, "--address", server.address)
    check(proc.returncode == 1 and "rpc failed: INVALID_ARGUMENT: " in proc.stderr,
          "a bad config: exit 1, INVALID_ARGUMENT by name")
print("PASS")
