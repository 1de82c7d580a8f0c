#!/usr/bin/env python3
"""Writes a speech-translation checkpoint with random weights in the served
layout (fairseq argument config.json + model.safetensors with fairseq names),
for benchmarks that need the paper's dimensions but no trained weights.

  make_random_st_model.py OUT_DIR [--dims paper|small] [--seed N]

paper: 12-layer encoder (E 512, 8 heads, FFN 2048, conv channels 1024) and
9-layer MTLA decoder (E 512, 8 heads, r 256, dR 32, dn = dv = 64, s 2,
FFN 2048), vocabulary 8000 (DESIGN.md section 2). Needs numpy.
"""
import argparse
import json
import os
import struct

import numpy as np

DIMS = {
    "paper": dict(E=512, heads=8, ffn=2048, enc_layers=12, conv=1024, dec_layers=9,
                  r=256, dr=32, dn=64, dv=64, s=2, vocab=8000),
    "small": dict(E=64, heads=4, ffn=128, enc_layers=2, conv=64, dec_layers=2,
                  r=32, dr=8, dn=16, dv=16, s=2, vocab=120),
}


def tensors(d, rng):
    E, H, F = d["E"], d["heads"], d["ffn"]
    out = {}

    def w(name, *shape, scale=None):
        fan_in = shape[-1] if len(shape) > 1 else shape[0]
        std = scale if scale is not None else 1.0 / np.sqrt(fan_in)
        out[name] = (rng.standard_normal(shape) * std).astype(np.float32)

    def ln(name, dim):
        out[name + ".weight"] = np.ones(dim, np.float32)
        out[name + ".bias"] = np.zeros(dim, np.float32)

    def linear(name, i, o, bias=True):
        w(name + ".weight", o, i)
        if bias:
            out[name + ".bias"] = np.zeros(o, np.float32)

    w("encoder.subsample.conv_layers.0.weight", d["conv"], 80, 5)
    out["encoder.subsample.conv_layers.0.bias"] = np.zeros(d["conv"], np.float32)
    w("encoder.subsample.conv_layers.1.weight", 2 * E, d["conv"] // 2, 5)
    out["encoder.subsample.conv_layers.1.bias"] = np.zeros(2 * E, np.float32)
    for l in range(d["enc_layers"]):
        p = f"encoder.transformer_layers.{l}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(p + "self_attn." + proj, E, E)
        ln(p + "self_attn_layer_norm", E)
        linear(p + "fc1", E, F)
        linear(p + "fc2", F, E)
        ln(p + "final_layer_norm", E)
    ln("encoder.layer_norm", E)

    r, dr, dn, dv = d["r"], d["dr"], d["dn"], d["dv"]
    w("decoder.embed_tokens.weight", d["vocab"], E, scale=E ** -0.5)
    linear("decoder.projector.linear1", E, E // 2)
    linear("decoder.projector.linear2", E // 2, E)
    for l in range(d["dec_layers"]):
        p = f"decoder.layers.{l}."
        linear(p + "self_attn.wq", E, H * (dn + dr), bias=False)
        linear(p + "self_attn.wkv_a", E, r + dr, bias=False)
        ln(p + "self_attn.kv_norm", r)
        linear(p + "self_attn.wkv_b", r, H * (dn + dv), bias=False)
        linear(p + "self_attn.wo", H * dv, E, bias=False)
        linear(p + "self_attn.hypernet_down.fc_c", r, r // 4)
        linear(p + "self_attn.hypernet_down.fc_p", r, r // 4)
        ln(p + "self_attn_layer_norm", E)
        linear(p + "fc1", E, F)
        linear(p + "fc2", F, E)
        ln(p + "final_layer_norm", E)
    ln("decoder.layer_norm", E)
    w("decoder.output_projection.weight", d["vocab"], E)
    return out


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name in sorted(tensors):
        t = tensors[name]
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in sorted(tensors):
            f.write(tensors[name].tobytes())


def config(d):
    return {
        "arch": "s2t_decoder_only_MTLA_cross_xm",
        "input_feat_per_channel": 80, "conv_kernel_sizes": "5,5", "conv_channels": d["conv"],
        "encoder_embed_dim": d["E"], "encoder_ffn_embed_dim": d["ffn"],
        "encoder_layers": d["enc_layers"], "encoder_attention_heads": d["heads"],
        "encoder_normalize_before": True, "decoder_embed_dim": d["E"],
        "decoder_ffn_embed_dim": d["ffn"], "decoder_layers": d["dec_layers"],
        "decoder_attention_heads": d["heads"], "decoder_kv_lora_rank": d["r"],
        "decoder_qk_rope_head_dim": d["dr"], "decoder_qk_nope_head_dim": d["dn"],
        "decoder_v_head_dim": d["dv"], "decoder_q_lora_rank": 0, "decoder_down_rate": d["s"],
        "vocab_size": d["vocab"], "activation_fn": "relu", "cmvn": "utterance",
        "share_decoder_input_output_embed": False, "no_scale_embedding": False,
        "max_source_positions": 6000, "max_target_positions": 1024,
        "bos": 0, "pad": 1, "eos": 2, "unk": 3,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--dims", choices=sorted(DIMS), default="paper")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    d = DIMS[args.dims]
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config(d), f, indent=2)
    write_safetensors(os.path.join(args.out_dir, "model.safetensors"),
                      tensors(d, np.random.default_rng(args.seed)))
    print(f"wrote a random {args.dims} speech-translation checkpoint to {args.out_dir}")


if __name__ == "__main__":
    main()
