#!/usr/bin/env python3
"""Streams a WAV file to mtla-server's SpeechTranslation/StreamingTranslate and
prints interim hypotheses and final results as they arrive.

    python3 examples/python/streaming_translate.py --address 127.0.0.1:50051 \\
        models/en-de-synthetic/sample.wav [--chunk_ms 100] [--realtime] [--no_interim]
        [--beam_size N] [--source_language en] [--target_language de]
        [--transcript FILE]

Needs Debian's python3-grpcio (tools/setup.sh). The mtla.v1 Python stubs are
generated from proto/ on first use into --stubs_dir (default:
$TMPDIR/mtla_python_stubs) with protoc and grpc_python_plugin
(protobuf-compiler, protobuf-compiler-grpc); only the mtla protos are
generated, so nothing shadows grpcio's own `grpc` package.

Output, one line per message (see docs/api.md for the message sequence):
    metadata: model en-de-synthetic, en -> de
    interim [0] 0.00-1.20s (stability 0.00): Unsere Telefon
    interim [0] 0.00-2.20s (stability 0.67): Unsere Telefonnummer ist
    final   [0] 0.00-2.46s: Unsere Telefonnummer ist ... | 69 9 56 ... (rtf 0.009)
            alternative 1 (score -0.12): Unsere Telefonnummer ist ...
Text deltas (kind DELTA) are not printed: the final line holds their sum.
With --beam_size N > 1 the final line is followed by its N alternatives.
--transcript FILE writes every message of the call, requests and responses in
order, as JSON lines {"request": ...} / {"response": ...} (protobuf's JSON
mapping; audio bytes abbreviated to their count) and {"status": ...} last.
Exit code 0 on success, 1 on an RPC error ("rpc failed: INVALID_ARGUMENT: ..."),
2 on bad usage.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "proto")
MTLA_PROTOS = ["mtla/v1/speech_translation.proto", "mtla/v1/models.proto",
               "mtla/v1/text_generation.proto"]


def generate_stubs(out_dir, proto_root=PROTO_ROOT):
    """Writes mtla/v1/*_pb2.py and *_pb2_grpc.py under out_dir (protoc with
    grpc_python_plugin; the Debian python3-grpc-tools' bundled protoc is too old
    for proto3 `optional`). Returns out_dir."""
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        raise RuntimeError("protoc and grpc_python_plugin are needed to generate the stubs "
                           "(Debian: protobuf-compiler protobuf-compiler-grpc)")
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run([protoc, f"--proto_path={proto_root}", f"--python_out={out_dir}",
                    f"--grpc_out={out_dir}", f"--plugin=protoc-gen-grpc={plugin}", *MTLA_PROTOS],
                   check=True)
    return out_dir


def import_stubs(stubs_dir):
    """(speech_translation_pb2, speech_translation_pb2_grpc), generating them
    into stubs_dir when they are not there yet."""
    if not os.path.isfile(os.path.join(stubs_dir, "mtla", "v1", "speech_translation_pb2_grpc.py")):
        generate_stubs(stubs_dir)
    # Appended, not prepended: nothing in stubs_dir may shadow an installed package.
    sys.path.append(stubs_dir)
    from mtla.v1 import speech_translation_pb2, speech_translation_pb2_grpc
    return speech_translation_pb2, speech_translation_pb2_grpc


def read_wav(path):
    """(sample_rate_hz, PCM16 little-endian mono bytes)."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: need 16-bit mono PCM, got {8 * w.getsampwidth()}-bit "
                             f"with {w.getnchannels()} channels")
        return w.getframerate(), w.readframes(w.getnframes())


def requests(pb2, config, rate, pcm, chunk_ms, realtime, log):
    """The config message, then the audio in chunk_ms pieces; each one is
    passed to log() as it is sent."""
    first = pb2.StreamingTranslateRequest(config=config)
    log("request", first)
    yield first
    step = rate * chunk_ms // 1000 * 2  # bytes per chunk
    for at in range(0, len(pcm), step):
        chunk = pb2.StreamingTranslateRequest(audio=pcm[at:at + step])
        log("request", chunk)
        yield chunk
        if realtime:
            time.sleep(chunk_ms / 1000)


def describe(pb2, result):
    """The printable lines for a SegmentResult: none for a text delta."""
    span = f"[{result.segment_index}] {result.start_seconds:.2f}-{result.end_seconds:.2f}s"
    if result.kind == pb2.RESULT_KIND_FINAL:
        ids = " ".join(str(i) for i in result.token_ids)
        lines = [f"final   {span}: {result.text} | {ids} "
                 f"(rtf {result.timing.real_time_factor:.3f})"]
        if len(result.alternatives) > 1:  # the n-best of a beam search, best first
            lines += [f"        alternative {i + 1} (score {a.score:.3f}): {a.text}"
                      for i, a in enumerate(result.alternatives)]
        return lines
    if result.kind == pb2.RESULT_KIND_INTERIM:  # the whole hypothesis so far
        return [f"interim {span} (stability {result.stability:.2f}): {result.text}"]
    return []  # RESULT_KIND_DELTA: new text of the segment; its final line has it all


def transcript_logger(out):
    """log(direction, message) writing JSON lines to `out` (None: no log)."""
    if out is None:
        return lambda direction, message: None
    from google.protobuf import json_format

    def log(direction, message):
        if direction == "request" and message.WhichOneof("request") == "audio":
            entry = {"audio": f"<{len(message.audio)} bytes of PCM16>"}
        else:
            entry = json_format.MessageToDict(message, preserving_proto_field_name=True)
        out.write(json.dumps({direction: entry}, ensure_ascii=False) + "\n")
        out.flush()
    return log


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wav", help="16-bit mono PCM WAV, 8-48 kHz")
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--chunk_ms", type=int, default=100)
    parser.add_argument("--realtime", action="store_true", help="send audio at real-time pace")
    parser.add_argument("--no_interim", action="store_true", help="final results only")
    parser.add_argument("--beam_size", type=int, default=0,
                        help="0 or 1: greedy; more: beam search, final results with the n-best")
    parser.add_argument("--source_language", default="",
                        help="e.g. en (empty: the model's own; GetModelInfo lists them)")
    parser.add_argument("--target_language", default="", help="e.g. de (empty: the model's own)")
    parser.add_argument("--transcript", help="write the call's messages as JSON lines here")
    parser.add_argument("--timeout", type=float, default=120, help="deadline in seconds")
    parser.add_argument("--stubs_dir", default=os.path.join(tempfile.gettempdir(),
                                                            "mtla_python_stubs"))
    args = parser.parse_args(argv)
    if args.chunk_ms <= 0:
        parser.error("--chunk_ms must be positive")
    try:
        rate, pcm = read_wav(args.wav)
    except (OSError, ValueError, wave.Error) as e:
        print(f"streaming_translate: {e}", file=sys.stderr)
        return 2

    import grpc  # Debian's python3-grpcio
    pb2, pb2_grpc = import_stubs(args.stubs_dir)
    config = pb2.TranslationConfig(encoding=pb2.LINEAR_PCM16, sample_rate_hz=rate,
                                   interim_results=not args.no_interim,
                                   beam_size=args.beam_size,
                                   source_language=args.source_language,
                                   target_language=args.target_language)
    transcript = open(args.transcript, "w", encoding="utf-8") if args.transcript else None
    log = transcript_logger(transcript)
    finals = 0
    try:
        with grpc.insecure_channel(args.address) as channel:
            stub = pb2_grpc.SpeechTranslationStub(channel)
            try:
                for response in stub.StreamingTranslate(
                        requests(pb2, config, rate, pcm, args.chunk_ms, args.realtime, log),
                        timeout=args.timeout):
                    log("response", response)
                    if response.HasField("metadata"):  # the first response: who serves
                        m = response.metadata
                        print(f"metadata: model {m.model}, "
                              f"{m.source_language or '?'} -> {m.target_language or '?'}",
                              flush=True)
                    elif response.HasField("result"):
                        for line in describe(pb2, response.result):
                            print(line, flush=True)
                        finals += response.result.kind == pb2.RESULT_KIND_FINAL
                    # progress: audio received so far, not printed
            except grpc.RpcError as e:
                if transcript:
                    transcript.write(json.dumps({"status": {"code": e.code().name,
                                                            "message": e.details()}}) + "\n")
                print(f"streaming_translate: rpc failed: {e.code().name}: {e.details()}",
                      file=sys.stderr)
                return 1
        if transcript:
            transcript.write(json.dumps({"status": {"code": "OK"}}) + "\n")
    finally:
        if transcript:
            transcript.close()
    print(f"{finals} final result(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
