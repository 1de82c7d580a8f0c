#!/usr/bin/python3
"""End-to-end test of tools/convert/fairseq_to_served.py.

  convert_test.py --converter PY --conformance BIN --testdata DIR

Builds fairseq-layout checkpoints (torch.save'd {"model": state_dict, "args":
Namespace}; {"model": ..., "cfg": {"model": ..., "task": ...}} as plain dicts
and as pickled config objects of a module the converter cannot import) from the
shared reference model (DIR/fairseq_st_reference/fairseq_st_s2), with fp16
tensors and buffers fairseq keeps (decoder.version, positional-embedding
buffers) and training-only arguments; converts them; runs
`mtla-conformance fairseq-st` on each result next to the reference's
expected.safetensors; checks the written tensors, the --fp16 output, --spm, and
that malformed checkpoints fail with clear errors. Exit 77 (skip) when torch
cannot be imported or the shared data is absent.
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

SKIP = 77
ARCH = "s2t_decoder_only_MTLA_cross_xm"
FP16_TENSORS = ("encoder.transformer_layers.0.self_attn.out_proj.bias",
                "encoder.transformer_layers.1.self_attn.out_proj.bias")
failures = []


def check(condition, what):
    print(("PASS " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)
    return condition


def read_safetensors(path):
    import numpy as np
    dtypes = {"F32": np.float32, "F16": np.float16}
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        a = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=dtypes[info["dtype"]])
        out[name] = (info["dtype"], a.reshape(info["shape"]))
    return out


def run(cmd, expect_ok=True):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=300)
    if expect_ok and p.returncode != 0:
        print("command failed (%d): %s\n--- stdout\n%s--- stderr\n%s" %
              (p.returncode, " ".join(cmd), p.stdout, p.stderr))
    return p


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--converter", required=True)
    parser.add_argument("--conformance", required=True)
    parser.add_argument("--testdata", required=True)
    opts = parser.parse_args()

    try:
        import numpy as np
        import torch
    except ImportError as e:
        print("SKIPPED: %s cannot import torch/numpy (%s); install python3-torch" %
              (sys.executable, e))
        return SKIP
    ref = os.path.join(opts.testdata, "fairseq_st_reference", "fairseq_st_s2")
    needed = [os.path.join(ref, f) for f in ("model.safetensors", "config.json",
                                             "expected.safetensors")]
    absent = [f for f in needed if not os.path.isfile(f)]
    if absent:
        print("SKIPPED: shared test data not found: %s" % ", ".join(absent))
        return SKIP

    reference = read_safetensors(needed[0])
    with open(needed[1]) as f:
        ref_config = json.load(f)
    for name in FP16_TENSORS:  # chosen because fp16 holds their values exactly
        a = reference[name][1]
        assert np.array_equal(a.astype(np.float16).astype(np.float32), a), name

    # The state dict as fairseq keeps it: fp16 tensors and buffers included.
    state_dict = {}
    for name, (_, a) in sorted(reference.items()):
        t = torch.from_numpy(a.copy())
        state_dict[name] = t.half() if name in FP16_TENSORS else t
    state_dict["decoder.version"] = torch.tensor([3.0])
    state_dict["encoder.embed_positions._float_tensor"] = torch.zeros(1)
    served_names = sorted(n for n in reference if n != "decoder.version")

    # Architecture arguments as fairseq-train stores them: the config's keys
    # that are arguments, plus task/training-only ones.
    model_args = {k: v for k, v in ref_config.items()
                  if k not in ("vocab_size", "bos", "pad", "eos", "unk", "cmvn")}
    training_args = dict(lr=[0.002], max_tokens=40000, optimizer="adam",
                         criterion="label_smoothed_cross_entropy", label_smoothing=0.1,
                         dropout=0.15, task="speech_to_text", data="/data/mustc/en-de",
                         config_yaml="config_st.yaml", seed=1, update_freq=[1],
                         decoder_learned_pos=False, adaptive_softmax_cutoff=None,
                         decoder_input_dim=ref_config["decoder_embed_dim"],
                         tgt_dict_size=ref_config["vocab_size"], input_channels=1,
                         no_cross_attention=True, encoder_freezing_updates=0)

    tmp = tempfile.mkdtemp(prefix="mtla_convert_test_")
    try:
        layouts = {}
        layouts["args"] = {"model": state_dict,
                           "args": argparse.Namespace(**model_args, **training_args),
                           "optimizer_history": [{"num_updates": 100}],
                           "extra_state": {"epoch": 3}}
        # Newer fairseq: cfg["model"] (here a dict naming the arch by "_name"
        # and "arch", without the task's max positions: those sit in
        # cfg["task"]), plus a CTC head the server does not read.
        cfg_model = {k: v for k, v in model_args.items()
                     if k not in ("max_source_positions", "max_target_positions")}
        cfg_model["_name"] = cfg_model.pop("arch")
        cfg_model["ctc_weight"] = 0.3
        cfg_state = dict(state_dict)
        cfg_state["encoder.ctc_proj.weight"] = torch.zeros(ref_config["vocab_size"],
                                                           ref_config["encoder_embed_dim"])
        cfg_state["encoder.ctc_proj.bias"] = torch.zeros(ref_config["vocab_size"])
        layouts["cfg"] = {"model": cfg_state, "args": None,
                          "cfg": {"common": {"fp16": True, "seed": 1},
                                  "task": {"_name": "speech_to_text",
                                           "max_source_positions":
                                               ref_config["max_source_positions"],
                                           "max_target_positions":
                                               ref_config["max_target_positions"]},
                                  "optimization": {"lr": [0.002], "max_update": 100000},
                                  "model": cfg_model}}

        # cfg as pickled config objects from a module the converter's process
        # cannot import (as omegaconf's DictConfig, when omegaconf is absent):
        # a container with "_content", values in nodes with "_val", and
        # cfg.model a Namespace in a node (fairseq's legacy-model layout).
        fake = os.path.join(tmp, "fakemods")
        os.makedirs(fake)
        with open(os.path.join(fake, "mtla_test_fake_omegaconf.py"), "w") as f:
            f.write("class DictConfig:\n"
                    "    def __init__(self, content):\n"
                    "        self._content = content\n"
                    "        self._metadata = Metadata()\n"
                    "        self._parent = None\n"
                    "class AnyNode:\n"
                    "    def __init__(self, val):\n"
                    "        self._val = val\n"
                    "        self._metadata = Metadata()\n"
                    "class Metadata:\n"
                    "    def __init__(self):\n"
                    "        self.flags = {'allow_objects': True}\n")
        sys.path.insert(0, fake)
        import mtla_test_fake_omegaconf as oc
        layouts["cfg_objects"] = {"model": state_dict, "args": None, "cfg": oc.DictConfig({
            "common": oc.DictConfig({"seed": oc.AnyNode(1)}),
            "model": oc.AnyNode(argparse.Namespace(**model_args, **training_args)),
            "task": oc.DictConfig({"_name": oc.AnyNode("speech_to_text")})})}

        for layout, state in layouts.items():
            ckpt = os.path.join(tmp, "checkpoint_best_%s.pt" % layout)
            torch.save(state, ckpt)
            out = os.path.join(tmp, "served_" + layout)
            p = run([sys.executable, opts.converter, ckpt, out, "--source-language", "en",
                     "--target-language", "de"])
            if not check(p.returncode == 0, "[%s] converter exits 0" % layout):
                continue
            print(p.stdout, end="")
            with open(os.path.join(out, "config.json")) as f:
                config = json.load(f)
            check(all(config.get(k) == v for k, v in ref_config.items()),
                  "[%s] config.json has the reference's values" % layout)
            check(config.get("source_language") == "en" and config.get("target_language") == "de",
                  "[%s] config.json has the languages" % layout)
            check(not {"lr", "max_tokens", "optimizer", "data", "ctc_weight"} & set(config),
                  "[%s] config.json leaves training arguments out" % layout)
            written = read_safetensors(os.path.join(out, "model.safetensors"))
            check(sorted(written) == served_names,
                  "[%s] model.safetensors holds the served tensors (buffers, CTC head dropped)"
                  % layout)
            check(all(written[n][0] == "F32" and np.array_equal(written[n][1], reference[n][1])
                      for n in served_names if n in written),
                  "[%s] tensors are the reference's, F32" % layout)
            shutil.copyfile(needed[2], os.path.join(out, "expected.safetensors"))
            p = run([opts.conformance, "fairseq-st", out])
            print(p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr)
            check(p.returncode == 0, "[%s] mtla-conformance fairseq-st passes" % layout)
        sys.path.remove(fake)

        # --fp16 and --spm.
        out = os.path.join(tmp, "served_fp16")
        args_ckpt = os.path.join(tmp, "checkpoint_best_args.pt")
        spm_cmd = []
        spm_train = shutil.which("spm_train")
        if spm_train:
            corpus = os.path.join(tmp, "corpus.txt")
            with open(corpus, "w") as f:
                f.write("ein kleiner test\nnoch ein satz fuer den test\n" * 20)
            for prefix, ids in (("good", "--bos_id=0 --pad_id=1 --eos_id=2 --unk_id=3"),
                                ("bad", "")):
                run([spm_train, "--input=" + corpus, "--model_prefix=" + os.path.join(tmp, prefix),
                     "--model_type=char", "--vocab_size=30", "--hard_vocab_limit=false",
                     "--minloglevel=2"] + ids.split())
            spm_cmd = ["--spm", os.path.join(tmp, "good.model")]
        else:
            print("NOTE: spm_train not found; --spm is not tested")
        p = run([sys.executable, opts.converter, args_ckpt, out, "--fp16"] + spm_cmd)
        if check(p.returncode == 0, "[fp16] converter exits 0"):
            written = read_safetensors(os.path.join(out, "model.safetensors"))
            check(sorted(written) == served_names and
                  all(written[n][0] == "F16" and np.array_equal(
                      written[n][1], reference[n][1].astype(np.float16)) for n in served_names),
                  "[fp16] model.safetensors holds F16 roundings of the reference")
            if spm_cmd:
                with open(spm_cmd[1], "rb") as a, open(os.path.join(out, "spm.model"), "rb") as b:
                    check(a.read() == b.read(), "[spm] spm.model copied")
        if spm_train:
            p = run([sys.executable, opts.converter, args_ckpt, os.path.join(tmp, "bad_spm"),
                     "--spm", os.path.join(tmp, "bad.model")], expect_ok=False)
            check(p.returncode != 0 and "special ids" in p.stderr,
                  "[spm] an spm model with non-fairseq ids is refused: " + p.stderr.strip())

        # Malformed checkpoints: clear errors, non-zero exit.
        def expect_error(name, state, needle):
            ckpt = os.path.join(tmp, name + ".pt")
            torch.save(state, ckpt)
            p = run([sys.executable, opts.converter, ckpt, os.path.join(tmp, "out_" + name)],
                    expect_ok=False)
            message = p.stderr.strip()
            check(p.returncode != 0 and needle in message and "Traceback" not in message,
                  "[%s] fails with a clear error: %s" % (name, message))

        expect_error("no_model", {"args": argparse.Namespace(**model_args)}, "no \"model\" entry")
        expect_error("no_args", {"model": state_dict}, "neither \"args\" nor \"cfg\"")
        expect_error("unknown_arch", {"model": state_dict, "args": argparse.Namespace(
            **dict(model_args, arch="s2t_transformer_s"))}, "unsupported arch")
        expect_error("unsupported_option", {"model": state_dict, "args": argparse.Namespace(
            **dict(model_args, activation_fn="gelu"))}, "activation_fn")
        missing = dict(state_dict)
        del missing["decoder.layers.1.self_attn.wkv_b.weight"]
        expect_error("missing_tensor", {"model": missing, "args": argparse.Namespace(
            **model_args)}, "decoder.layers.1.self_attn.wkv_b.weight")
        expect_error("layer_mismatch", {"model": state_dict, "args": argparse.Namespace(
            **dict(model_args, decoder_layers=1))}, "not read by the server")
        expect_error("not_a_checkpoint", [1, 2, 3], "not a fairseq checkpoint")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
