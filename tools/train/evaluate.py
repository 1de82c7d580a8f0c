#!/usr/bin/env python3
"""Evaluates the exported model on the held-out test set, served and in PyTorch.

  evaluate.py --model models/NAME --data DATA_DIR --checkpoint CKPT.pt --out eval.json
              [--bin build/bin] [--concurrency 4] [--server ADDRESS]

Served: starts `mtla-server --model_dir=MODEL` on a free loopback port (or uses
--server ADDRESS) and streams every test WAV through
`mtla-client translate --json` (100 ms chunks, as fast as possible; the final
texts of all segments joined). PyTorch: greedy decoding (st_model.decode_greedy)
of the same float16-rounded weights on the same mtla-features features.
Reports, for both, the exact-match rate against the reference German and
corpus BLEU (NLTK, 4-gram, uniform weights, words and punctuation as tokens),
and how many served outputs equal PyTorch's (token ids). Prints a summary and
writes all of it, with every mismatch, to --out.
"""
import argparse
import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from nltk.translate.bleu_score import corpus_bleu

import corpus
from export import load_fp16_rounded
from st_model import EOS


def bleu(hypotheses, references):
    warnings.filterwarnings("ignore", module="nltk")  # "0 counts of n-gram overlaps" notes

    def tokens(text):
        return re.findall(r"\w+|[^\w\s]", text)
    return 100 * corpus_bleu([[tokens(r)] for r in references], [tokens(h) for h in hypotheses])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bin_dir, model_dir):
    port, metrics_port = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    server = subprocess.Popen([os.path.join(bin_dir, "mtla-server"), f"--model_dir={model_dir}",
                               f"--listen={address}", f"--metrics_listen=127.0.0.1:{metrics_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        if server.poll() is not None:
            raise SystemExit(f"mtla-server exited: {server.stderr.read().decode()}")
        if subprocess.run([os.path.join(bin_dir, "mtla-client"), "--address", address, "health"],
                          capture_output=True).returncode == 0:
            return server, address
        time.sleep(0.1)
    server.kill()
    raise SystemExit("mtla-server did not become healthy in 30 s")


def translate_served(bin_dir, address, wav):
    out = subprocess.run([os.path.join(bin_dir, "mtla-client"), "--address", address, "--json",
                          "translate", wav], capture_output=True, text=True)
    if out.returncode != 0:
        return dict(text=None, token_ids=None, error=out.stderr.strip())
    finals = [r for r in json.loads(out.stdout)["results"] if r["final"]]
    ids = [i for r in finals for i in r["token_ids"] if i != EOS]
    return dict(text=" ".join(r["text"] for r in finals).strip(), token_ids=ids,
                segments=len(finals))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--bin", default="build/bin")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--server", help="address of a running server (default: start one)")
    args = parser.parse_args()

    test = corpus.read_utterances(os.path.join(args.data, "test.tsv"))
    references = [u["german"] for u in test]

    # PyTorch greedy on the served weights and the served front-end's features.
    model = load_fp16_rounded(args.checkpoint)
    _, feats = corpus.load_features(os.path.join(args.data, "feat_test"))
    started = time.time()
    torch_ids = []
    for f in feats:
        tokens = model.decode_greedy(torch.from_numpy(np.array(f)))["tokens"]
        torch_ids.append([t for t in tokens if t != EOS])
    torch_texts = corpus.decode_pieces(os.path.join(args.model, "spm.model"), torch_ids)
    torch_seconds = time.time() - started

    server, address = (None, args.server) if args.server else start_server(args.bin, args.model)
    try:
        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            served = list(pool.map(lambda u: translate_served(args.bin, address, u["wav"]), test))
        served_seconds = time.time() - started
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)

    served_texts = [s["text"] or "" for s in served]
    errors = [(u["wav"], s["error"]) for u, s in zip(test, served) if s["text"] is None]
    n = len(test)
    result = {
        "utterances": n,
        "served_exact_match": sum(h == r for h, r in zip(served_texts, references)) / n,
        "pytorch_exact_match": sum(h == r for h, r in zip(torch_texts, references)) / n,
        "served_bleu": bleu(served_texts, references),
        "pytorch_bleu": bleu(torch_texts, references),
        "served_equals_pytorch": sum(s["token_ids"] == t for s, t in zip(served, torch_ids)),
        "served_errors": len(errors),
        "served_seconds": served_seconds,
        "pytorch_seconds": torch_seconds,
        "mismatches": [
            dict(wav=u["wav"], english=u["english"], reference=r, served=s, pytorch=t)
            for u, r, s, t in zip(test, references, served_texts, torch_texts) if s != r or t != r],
        "errors": errors,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
    print(f"held-out utterances: {n}")
    print(f"served  (mtla-server): exact match {100 * result['served_exact_match']:.1f}%  "
          f"BLEU {result['served_bleu']:.2f}  errors {len(errors)}  ({served_seconds:.0f} s)")
    print(f"PyTorch (greedy):      exact match {100 * result['pytorch_exact_match']:.1f}%  "
          f"BLEU {result['pytorch_bleu']:.2f}  ({torch_seconds:.0f} s)")
    print(f"served tokens == PyTorch tokens: {result['served_equals_pytorch']}/{n}")
    for m in result["mismatches"][:10]:
        print(f"  {m['english']!r}\n    ref     {m['reference']}\n    served  {m['served']}\n"
              f"    pytorch {m['pytorch']}")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
