#!/usr/bin/python3
"""Decode-speed baseline: the MTLA paper's official PyTorch code, on CPU.

Measures greedy decoding speed of the paper's speech-translation decoder
(fairseq architecture ``s2t_decoder_only_MTLA_cross_xm``) at the paper's
dimensions, with random weights, using the official attention module
``MultiheadTemporalLatentAttention`` from ``mtla/MTLA.py`` of
https://github.com/D-Keqi/mtla and that module's own incremental-decoding
path (``incremental_state`` dict, one token per call after the prefix step).

The official code is NOT part of this repository and must never be committed
to it.  The caller extracts it to a path outside the repo and passes that path:

    git -C /work/.mirror/D-Keqi+mtla/repo show HEAD:mtla/MTLA.py > /tmp/MTLA.py
    /usr/bin/python3 bench/official/official_decode_bench.py \\
        --mtla-py /tmp/MTLA.py --batch 1 32 --json /tmp/official_decode.json

(Importing MTLA.py prints a warning that flash_attn is not installed; the
benchmark does not use FlashAttention.)

What is reproduced here, read from the mirror's
``experiments/tools/fairseq/fairseq/models/transformer/transformer_decoder.py``
(classes ``MTLADecoderOnly``, ``MTLADecoderOnlyLayer``,
``EncoderProjectorConcat``) and ``.../speech_to_text/s2t_transformer.py``
(architecture ``s2t_decoder_only_MTLA_cross_xm``):

* 9 layers, E 512, 8 heads, q_lora_rank 0, kv_lora_rank 256, qk_rope 32,
  qk_nope = v_head = 64, down_rate 2, FFN 2048 ReLU, vocabulary 8000,
  token embedding scaled by sqrt(E), no absolute positions (RoPE only),
  final LayerNorm, untied output projection without bias.
* Layer (``MTLADecoderOnlyLayer.forward``; x is T x B x C as in fairseq):
  residual = x; h = LN_a(x^T); y = [prefix ; h] on the first call (before
  the attention module has "prev_k_pe" in its incremental buffer), y = h
  afterwards; a = MTLA(query=h, key=y, value=y, position=pos, incremental_state);
  x = LN_a(residual + a^T); x = LN_f(x + fc2(relu(fc1(x)))).
* Decoder (``MTLADecoderOnly.extract_features_scriptable``): on every call it
  runs the projector (Linear E->E/2, ReLU, Linear E/2->E;
  encoder_projector_ds_rate 1) over the encoder output to get the prefix.
  First call (prev_output_tokens = [EOS], incremental_state empty):
  position = arange(0, P + 1) of shape (1, P + 1).  Later calls
  (prev_output_tokens holds all tokens so far, slen of them): only the last
  token is embedded and position = [[P + slen - 1]].  No padding, so no
  padding masks and no per-sample position offsets.
* Output: ``output_layer`` then log_softmax (what fairseq's
  ``get_normalized_probs`` gives the search), then greedy argmax.

By default the projector is re-run on every call, exactly as fairseq's
decoder does (its output is unused after the first call).  ``--cache-projector``
runs it once per utterance instead, to show how much of the time that costs.

Timing: one prefix step (P encoder frames + EOS through the projector and all
layers; this is also the step that yields the first token), then ``--new-tokens``
decode steps of one token each.  Decode tokens/s = batch * new_tokens / time
of those decode steps (the prefix step excluded; it is reported separately).
No early stop on EOS (the weights are random).  fp32, torch.no_grad(),
torch.set_num_threads(--threads), one warm-up run per batch size, then
``--repeats`` measured runs; medians are reported.  Beam search bookkeeping of
fairseq's SequenceGenerator (e.g. reorder_incremental_state each step) is not
included.
"""

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EOS = 2
PAD = 1


def _busy_cpu_seconds():
    """Busy CPU seconds of the whole machine (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds():
    t = os.times()
    return t.user + t.system


class OtherLoad:
    """Share of the machine's CPU capacity used by OTHER processes while the
    block ran (0 = machine otherwise idle, 1 = all cores busy elsewhere)."""

    def __enter__(self):
        self.b0, self.o0, self.w0 = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        b1, o1, w1 = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
        if self.b0 is None or b1 is None:
            self.value = None
        else:
            other = (b1 - self.b0) - (o1 - self.o0)
            self.value = max(0.0, other / ((w1 - self.w0) * os.cpu_count()))
        return False


def wait_for_idle(max_wait_s, threshold=0.1):
    """Wait (up to max_wait_s) until other processes use < threshold of the CPUs
    over a 2 s window. Returns the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait_s:
        with OtherLoad() as ol:
            time.sleep(2.0)
        if ol.value is None or ol.value < threshold:
            break
    return time.perf_counter() - start


def load_official_mtla(path):
    spec = importlib.util.spec_from_file_location("official_mtla_MTLA", path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MultiheadTemporalLatentAttention


class Projector(nn.Module):
    """fairseq EncoderProjectorConcat with encoder_projector_ds_rate = 1."""

    def __init__(self, enc_dim, dec_dim):
        super().__init__()
        self.linear1 = nn.Linear(enc_dim, dec_dim // 2)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(dec_dim // 2, dec_dim)

    def forward(self, x):  # B x T x C
        return self.linear2(self.relu(self.linear1(x.contiguous())))


class DecoderLayer(nn.Module):
    """Mirror of fairseq MTLADecoderOnlyLayer (inference: dropout off)."""

    def __init__(self, mtla_cls, cfg):
        super().__init__()
        E = cfg["embed_dim"]
        self.self_attn = mtla_cls(
            embed_dim=E,
            num_heads=cfg["heads"],
            dropout=0.0,
            q_lora_rank=0,
            kv_lora_rank=cfg["kv_lora_rank"],
            qk_nope_head_dim=cfg["qk_nope_head_dim"],
            qk_rope_head_dim=cfg["qk_rope_head_dim"],
            v_head_dim=cfg["v_head_dim"],
            down_rate=cfg["down_rate"],
        )
        self.self_attn_layer_norm = nn.LayerNorm(E)
        self.fc1 = nn.Linear(E, cfg["ffn_dim"])
        self.fc2 = nn.Linear(cfg["ffn_dim"], E)
        self.final_layer_norm = nn.LayerNorm(E)

    def forward(self, x, encoder_out, position, incremental_state,
                self_attn_mask=None):
        residual = x                      # T x B x C
        x = x.transpose(0, 1)             # B x T x C
        x = self.self_attn_layer_norm(x)
        buf = self.self_attn._get_input_buffer(incremental_state)
        if not (incremental_state is not None and buf is not None
                and "prev_k_pe" in buf):
            if self_attn_mask is not None:  # full (non-incremental) pass only
                self_attn_mask = torch.cat(
                    (x.new_zeros(x.size(1), encoder_out.size(1)), self_attn_mask),
                    dim=1)
            y = torch.cat((encoder_out, x), dim=1)
        else:
            y = x
        attn = self.self_attn(
            query=x, key=y, value=y,
            key_padding_mask=None,
            self_attn_mask=self_attn_mask,
            position=position,
            incremental_state=incremental_state,
            need_weights=False,
        )
        x = residual + attn.transpose(0, 1)
        x = self.self_attn_layer_norm(x)
        residual = x
        x = self.fc2(F.relu(self.fc1(x)))
        x = residual + x
        x = self.final_layer_norm(x)
        return x


class Decoder(nn.Module):
    """Mirror of fairseq MTLADecoderOnly (+ TransformerDecoder.output_layer)."""

    def __init__(self, mtla_cls, cfg):
        super().__init__()
        E = cfg["embed_dim"]
        self.embed_tokens = nn.Embedding(cfg["vocab"], E, padding_idx=PAD)
        nn.init.normal_(self.embed_tokens.weight, mean=0, std=E ** -0.5)
        self.embed_scale = math.sqrt(E)
        self.layers = nn.ModuleList(
            [DecoderLayer(mtla_cls, cfg) for _ in range(cfg["layers"])])
        self.layer_norm = nn.LayerNorm(E)
        self.output_projection = nn.Linear(E, cfg["vocab"], bias=False)
        nn.init.normal_(self.output_projection.weight, mean=0, std=E ** -0.5)
        self.projector = Projector(cfg["enc_dim"], E)
        self.cached_prefix = None  # used only with --cache-projector

    def forward(self, prev_output_tokens, encoder_out, incremental_state,
                cache_projector=False):
        """prev_output_tokens: B x slen (all tokens so far, as fairseq passes
        them); encoder_out: P x B x C (fairseq's encoder_out["encoder_out"][0])."""
        bs, slen = prev_output_tokens.size()
        if cache_projector and self.cached_prefix is not None:
            enc = self.cached_prefix
        else:
            enc = self.projector(encoder_out.transpose(0, 1))
            if cache_projector:
                self.cached_prefix = enc
        enc_len = enc.size(1)
        device = prev_output_tokens.device
        if incremental_state is not None and slen > 1:
            prev_output_tokens = prev_output_tokens[:, -1:]
            position = (torch.arange(0, 1, device=device).float().view(1, -1)
                        + enc_len + slen - 1)
        else:
            position = torch.arange(0, enc_len + slen,
                                    device=device).float().view(1, -1)
        x = self.embed_scale * self.embed_tokens(prev_output_tokens.contiguous())
        x = x.transpose(0, 1)  # T x B x C
        self_attn_mask = None
        if incremental_state is None:
            t = x.size(0)
            self_attn_mask = torch.triu(
                torch.full((t, t), float("-inf"), device=device), 1)
        for layer in self.layers:
            x = layer(x, enc, position, incremental_state,
                      self_attn_mask=self_attn_mask)
        x = self.layer_norm(x)
        x = x.transpose(0, 1)
        return self.output_projection(x)


def greedy_decode(decoder, encoder_out, new_tokens, cache_projector):
    """Prefix step + new_tokens one-token steps. Returns (tokens, t_prefix, t_decode)."""
    bsz = encoder_out.size(1)
    decoder.cached_prefix = None
    incremental_state = {}
    tokens = torch.full((bsz, 1), EOS, dtype=torch.long)

    def step():
        nonlocal tokens
        logits = decoder(tokens, encoder_out, incremental_state, cache_projector)
        lprobs = F.log_softmax(logits[:, -1, :], dim=-1)
        nxt = lprobs.argmax(dim=-1, keepdim=True)
        tokens = torch.cat([tokens, nxt], dim=1)

    t0 = time.perf_counter()
    step()  # prefix: P frames + EOS -> first token
    t1 = time.perf_counter()
    for _ in range(new_tokens):
        step()
    t2 = time.perf_counter()
    return tokens, t1 - t0, t2 - t1


def check_against_full_pass(decoder, cfg, P, steps=9):
    """Incremental logits must match the module's own full (training) path."""
    torch.manual_seed(1)
    enc = torch.randn(P, 2, cfg["enc_dim"])
    tokens, _, _ = greedy_decode(decoder, enc, steps, cache_projector=False)
    inc_state = {}
    inc_logits = []
    for i in range(1, tokens.size(1) + 1):
        inc_logits.append(decoder(tokens[:, :i], enc, inc_state)[:, -1])
    inc_logits = torch.stack(inc_logits, dim=1)
    full_logits = decoder(tokens, enc, None)
    return (inc_logits - full_logits).abs().max().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mtla-py", required=True,
                    help="path to the official mtla/MTLA.py, extracted outside the repo")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prefix-frames", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-projector", action="store_true",
                    help="run the projector once per utterance instead of on every "
                         "decoder call (fairseq re-runs it every call)")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the incremental-vs-full-pass consistency check")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="MAX_S",
                    help="before each measured run, wait up to MAX_S seconds for "
                         "other processes to leave the CPUs idle (default: no wait)")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = dict(layers=9, embed_dim=512, enc_dim=512, heads=8, kv_lora_rank=256,
               qk_rope_head_dim=32, qk_nope_head_dim=64, v_head_dim=64,
               down_rate=2, ffn_dim=2048, vocab=8000)
    mtla_cls = load_official_mtla(args.mtla_py)
    decoder = Decoder(mtla_cls, cfg).float().eval()
    n_params = sum(p.numel() for p in decoder.parameters())

    results = {
        "what": "official MTLA (mtla/MTLA.py) ST decoder, greedy incremental decode, CPU fp32",
        "config": cfg,
        "params": n_params,
        "prefix_frames": args.prefix_frames,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "projector_every_step": not args.cache_projector,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "batches": {},
    }
    print(f"decoder params: {n_params/1e6:.2f} M; P={args.prefix_frames} frames; "
          f"{args.new_tokens} new tokens; threads={torch.get_num_threads()}; "
          f"projector every step: {not args.cache_projector}", flush=True)

    with torch.no_grad():
        if not args.no_check:
            err = check_against_full_pass(decoder, cfg, args.prefix_frames)
            results["check_max_abs_logit_diff_incremental_vs_full"] = err
            print(f"check: incremental vs full-pass logits, max |diff| = {err:.3e}",
                  flush=True)
            if not err < 1e-3:
                sys.exit("incremental decoding disagrees with the full pass")

        for bsz in args.batch:
            torch.manual_seed(args.seed + bsz)
            enc = torch.randn(args.prefix_frames, bsz, cfg["enc_dim"])
            greedy_decode(decoder, enc, args.new_tokens, args.cache_projector)  # warm-up
            prefix_s, decode_s, other_load = [], [], []
            ref_tokens = None
            for _ in range(args.repeats):
                if args.wait_idle > 0:
                    wait_for_idle(args.wait_idle)
                with OtherLoad() as ol:
                    toks, tp, td = greedy_decode(decoder, enc, args.new_tokens,
                                                 args.cache_projector)
                other_load.append(ol.value)
                if ref_tokens is None:
                    ref_tokens = toks
                elif not torch.equal(ref_tokens, toks):
                    print("warning: repeats produced different tokens", flush=True)
                prefix_s.append(tp)
                decode_s.append(td)
                ol_txt = "n/a" if ol.value is None else f"{ol.value:.0%}"
                print(f"  batch {bsz}: prefix {tp*1e3:.1f} ms, decode {td:.3f} s, "
                      f"{bsz*args.new_tokens/td:.1f} tok/s (other processes used "
                      f"{ol_txt} of the CPUs)", flush=True)
            tok_s = [bsz * args.new_tokens / d for d in decode_s]
            results["batches"][str(bsz)] = {
                "prefix_s": prefix_s,
                "decode_s": decode_s,
                "other_processes_cpu_share": other_load,
                "median_prefix_s": statistics.median(prefix_s),
                "median_decode_s": statistics.median(decode_s),
                "median_tok_per_s": statistics.median(tok_s),
                "median_ms_per_step": statistics.median(decode_s) / args.new_tokens * 1e3,
            }

    results["loadavg_end"] = os.getloadavg()
    print()
    print(f"load average (1/5/15 min) at start {results['loadavg_start']}, "
          f"at end {results['loadavg_end']}")
    print(f"{'batch':>5} {'tok/s (median)':>15} {'ms/step':>9} {'prefix ms':>10} "
          f"{'other load':>10}")
    for bsz, r in results["batches"].items():
        loads = [v for v in r["other_processes_cpu_share"] if v is not None]
        lt = f"{max(loads):.0%} max" if loads else "n/a"
        print(f"{bsz:>5} {r['median_tok_per_s']:>15.1f} {r['median_ms_per_step']:>9.2f} "
              f"{r['median_prefix_s']*1e3:>10.1f} {lt:>10}")
    if any(v is not None and v > 0.1 for r in results["batches"].values()
           for v in r["other_processes_cpu_share"]):
        print("warning: other processes used more than 10% of the CPUs during a "
              "measurement; the numbers are pessimistic. Re-run on an idle machine.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
