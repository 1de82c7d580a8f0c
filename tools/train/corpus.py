"""Reading the pipeline's intermediate files: features written by
`mtla-features` (PREFIX.f32 + PREFIX.tsv), utterance lists written by
synthesize.py, and SentencePiece ids through Debian's `spm_encode`.
"""
import subprocess

import numpy as np

FEATURE_DIM = 80


def read_utterances(tsv_path):
    """synthesize.py's <split>.tsv -> list of dicts (wav, english, german, voice, ...)."""
    keys = ["wav", "english", "german", "voice", "speed", "pitch", "tempo", "gain_db", "snr_db"]
    with open(tsv_path, encoding="utf-8") as f:
        return [dict(zip(keys, line.rstrip("\n").split("\t"))) for line in f if line.strip()]


def load_features(prefix):
    """-> (paths, list of float32 arrays (frames, 80)) in the order of PREFIX.tsv."""
    rows = np.fromfile(prefix + ".f32", dtype=np.float32).reshape(-1, FEATURE_DIM)
    paths, feats = [], []
    with open(prefix + ".tsv", encoding="utf-8") as f:
        for line in f:
            path, first, count = line.rstrip("\n").split("\t")
            paths.append(path)
            feats.append(rows[int(first):int(first) + int(count)])
    return paths, feats


def compute_features(features_binary, wav_paths, prefix, cmvn="utterance"):
    """Runs the serving front-end (fbank, then utterance CMVN unless cmvn is
    "none") over wav_paths -> list of (frames, 80) arrays."""
    list_path = prefix + ".list"
    with open(list_path, "w", encoding="utf-8") as f:
        f.write("\n".join(wav_paths) + "\n")
    subprocess.run([features_binary, "--list", list_path, "--out", prefix, "--cmvn", cmvn],
                   check=True)
    paths, feats = load_features(prefix)
    if paths != list(wav_paths):
        raise RuntimeError(f"{prefix}.tsv does not list the requested files in order")
    return feats


def encode_pieces(spm_model, texts):
    """SentencePiece ids (no BOS/EOS) of each text, via `spm_encode`."""
    out = subprocess.run(["spm_encode", f"--model={spm_model}", "--output_format=id"],
                         input="\n".join(texts) + "\n", capture_output=True, text=True,
                         check=True).stdout
    ids = [[int(t) for t in line.split()] for line in out.split("\n")[:len(texts)]]
    if len(ids) != len(texts):
        raise RuntimeError("spm_encode returned fewer lines than texts")
    return ids


def decode_pieces(spm_model, id_lists):
    out = subprocess.run(["spm_decode", f"--model={spm_model}", "--input_format=id"],
                         input="\n".join(" ".join(map(str, ids)) for ids in id_lists) + "\n",
                         capture_output=True, text=True, check=True).stdout
    return out.split("\n")[:len(id_lists)]
