#!/usr/bin/env python3
"""Exports a trained checkpoint to the served layout, with a conformance reference.

  export.py --checkpoint CKPT_DIR/checkpoint.pt --data DATA_DIR --out models/NAME
            [--features-binary build/bin/mtla-features] [--sample-index N]

Writes into --out:
  config.json          fairseq argument layout (what mtla-server loads)
  model.safetensors    the weights in float16
  spm.model            the SentencePiece model (fairseq ids: <s> 0, <pad> 1, </s> 2, <unk> 3)
  sample.wav           a held-out test utterance (the README's demo input): the
                       first one the model translates exactly, unless
                       --sample-index picks one
  sample.txt           its English text and reference German translation
  expected.safetensors what the PyTorch model computes on sample.wav with the
                       float16-rounded weights in float32: input.pcm16,
                       input.fbank, input.fbank_cmvn (the C++ front-end's, via
                       mtla-features), encoder_out, greedy.tokens,
                       greedy.step_logits, greedy.score. So the directory is a
                       `mtla-conformance fairseq-st` case: the engine must
                       reproduce the logits and the greedy tokens exactly.
"""
import argparse
import json
import os
import shutil
import sys
import wave

import numpy as np
import torch

import corpus
from st_model import ModelDims, SpeechTranslationModel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "convert"))
from fairseq_to_served import write_safetensors  # noqa: E402

MAX_LEN_B = 200


def load_fp16_rounded(checkpoint_path):
    """The trained model with every weight rounded to float16 (what is served)."""
    state = torch.load(checkpoint_path, map_location="cpu")
    model = SpeechTranslationModel(ModelDims(**state["dims"]), dropout=0.0)
    model.load_state_dict({k: v.half().float() for k, v in state["model"].items()})
    return model.eval()


def first_exact_match(model, test, data_dir, spm_model):
    """Index of the first test utterance whose greedy translation is exact (0 if none)."""
    _, feats = corpus.load_features(os.path.join(data_dir, "feat_test"))
    for i, (utterance, f) in enumerate(zip(test, feats)):
        tokens = model.decode_greedy(torch.from_numpy(np.array(f)))["tokens"][:-1]
        if corpus.decode_pieces(spm_model, [tokens])[0] == utterance["german"]:
            return i
    return 0


def read_pcm16(path):
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise SystemExit(f"{path}: expected mono PCM16")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--features-binary", default="build/bin/mtla-features")
    parser.add_argument("--sample-index", type=int, default=-1,
                        help="test utterance for sample.wav (default: first exact match)")
    args = parser.parse_args()

    model = load_fp16_rounded(args.checkpoint)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(model.dims.fairseq_config(), f, indent=2, sort_keys=True)
        f.write("\n")
    size, _ = write_safetensors(os.path.join(args.out, "model.safetensors"),
                                model.state_dict(), fp16=True,
                                metadata={"source": "tools/train (synthetic en-de)"})
    shutil.copyfile(os.path.join(args.data, "spm.model"), os.path.join(args.out, "spm.model"))

    test = corpus.read_utterances(os.path.join(args.data, "test.tsv"))
    index = args.sample_index
    if index < 0:
        index = first_exact_match(model, test, args.data, os.path.join(args.out, "spm.model"))
    sample = test[index]
    wav_out = os.path.join(args.out, "sample.wav")
    shutil.copyfile(sample["wav"], wav_out)
    with open(os.path.join(args.out, "sample.txt"), "w", encoding="utf-8") as f:
        f.write(f"english\t{sample['english']}\ngerman\t{sample['german']}\n")
    scratch = os.path.join(args.data, "export_sample")
    fbank = corpus.compute_features(args.features_binary, [wav_out], scratch + "_raw",
                                    cmvn="none")[0]
    fbank_cmvn = corpus.compute_features(args.features_binary, [wav_out], scratch)[0]

    result = model.decode_greedy(torch.from_numpy(np.array(fbank_cmvn)), max_len_b=MAX_LEN_B)
    expected = {
        "input.pcm16": torch.from_numpy(read_pcm16(wav_out)),
        "input.fbank": torch.from_numpy(np.array(fbank)),
        "input.fbank_cmvn": torch.from_numpy(np.array(fbank_cmvn)),
        "encoder_out": result["encoder_out"],
        "greedy.tokens": torch.tensor(result["tokens"], dtype=torch.float32),
        "greedy.step_logits": result["step_logits"],
        "greedy.score": torch.tensor(result["score"], dtype=torch.float32),
    }
    logits = result["step_logits"]
    top2 = logits.topk(2, dim=-1).values
    margin = float((top2[:, 0] - top2[:, 1]).min())
    write_safetensors(os.path.join(args.out, "expected.safetensors"), expected, fp16=False,
                      metadata={"source": "tools/train/st_model.py (PyTorch), fp16-rounded "
                                          "weights in fp32",
                                "wav": "sample.wav", "max_len_a": "0",
                                "max_len_b": str(MAX_LEN_B), "len_penalty": "1.0",
                                "normalize_scores": "True", "min_top1_margin": f"{margin:.6f}"})
    text = corpus.decode_pieces(os.path.join(args.out, "spm.model"), [result["tokens"][:-1]])[0]
    print(f"exported {args.out}: test utterance {index} as sample.wav; model.safetensors {size / 1e6:.1f} MB of weights; "
          f"sample '{sample['english']}' -> '{text}' (reference '{sample['german']}'), "
          f"greedy top-1 margin {margin:.4f}")


if __name__ == "__main__":
    main()
