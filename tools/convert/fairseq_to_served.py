#!/usr/bin/python3
"""Convert the paper's fairseq speech-translation checkpoint into a served model directory.

The MTLA paper trains its speech-translation model with fairseq
(S2TTransformerModel, arch s2t_decoder_only_MTLA_cross_xm: Conv1d subsampler +
Transformer encoder, projector, MTLA decoder-only decoder). fairseq-train
writes checkpoint_best.pt; the server (mtla-server --model_dir=OUT_DIR) reads
a directory instead:

  OUT_DIR/config.json        fairseq architecture arguments as a flat JSON object
                             (the keys engine/speech/speech_config.cc reads)
  OUT_DIR/model.safetensors  the encoder.* / decoder.* tensors under fairseq's
                             state-dict names, float32 (float16 with --fp16)
  OUT_DIR/spm.model          the SentencePiece model, when --spm is given

Usage:
  /usr/bin/python3 tools/convert/fairseq_to_served.py CHECKPOINT_PT OUT_DIR \\
      [--spm SPM_MODEL] [--source-language en] [--target-language de] \\
      [--cmvn utterance|none] [--fp16] [--drop-unknown]

  CHECKPOINT_PT   a torch.save'd fairseq checkpoint (checkpoint_best.pt, or an
                  averaged checkpoint): a dict with the state dict under
                  "model" and the training arguments under either
                    "args"  an argparse.Namespace (older fairseq), or
                    "cfg"   a dict/omegaconf config (newer fairseq) whose
                            cfg["model"] holds the model arguments (a
                            Namespace or a dict; "_name" stands for "arch";
                            max_source/target_positions may sit in cfg["task"]).
                  Tensors may be float16/bfloat16 (fairseq --fp16 training).
  OUT_DIR         created if absent; config.json and model.safetensors (and
                  spm.model with --spm) are overwritten, nothing else is touched.
  --spm           SentencePiece model of the target dictionary (the
                  spm_*.model next to fairseq's config.yaml). Its special ids
                  must be fairseq's (<s>=0 <pad>=1 </s>=2 <unk>=3), as
                  examples/speech_to_text/data_utils.py:gen_vocab trains it.
  --source-language / --target-language
                  written to config.json; the server then checks requests.
  --cmvn          feature normalisation of the data config (config.yaml):
                  "utterance" for the utterance_cmvn transform (fairseq's
                  default, and the default here), "none" when there is none.
                  global_cmvn is not supported by the server.
  --fp16          write F16 tensors (half the size; the server converts them
                  to float32 on load, so outputs change by fp16 rounding).
  --drop-unknown  drop state-dict tensors the server does not read instead of
                  failing (by default they are an error: they mean the
                  checkpoint computes something the server does not).

What it does: loads the checkpoint on the CPU (torch.load; classes from
modules not installed here, such as omegaconf or fairseq, are read as
placeholders, so neither is needed); resolves the architecture arguments with
the defaults of fairseq's s2t_decoder_only_MTLA_cross_xm + base_architecture;
rejects options the server does not implement; takes vocab_size from
decoder.embed_tokens.weight; checks every tensor the server loads is present
with the shape the config implies; drops buffers the server does not read
(decoder.version, positional-embedding buffers such as
encoder.embed_positions._float_tensor), the CTC head (encoder.ctc_proj.*) and,
with share_decoder_input_output_embed, the tied decoder.output_projection;
writes safetensors (sorted names, 8-byte aligned header) and prints a summary.

Exit status: 0 on success, 1 on a conversion error (message on stderr), 2 on
bad command-line usage.
"""

import argparse
import collections
import importlib.abc
import importlib.util
import inspect
import json
import os
import re
import shutil
import struct
import sys
import types

ARCH = "s2t_decoder_only_MTLA_cross_xm"
PROG = "fairseq_to_served.py"


class ConversionError(Exception):
    pass


# --------------------------------------------------------------------------
# Checkpoint loading


class _Placeholder:
    """Stands in for a class whose module is not installed (omegaconf, fairseq)."""

    _module = "?"

    def __init__(self, *args, **kwargs):
        self.__dict__["_ph_args"] = args
        self.__dict__["_ph_kwargs"] = kwargs

    def __setstate__(self, state):
        self.__dict__["_ph_state"] = state

    def __repr__(self):
        return "<placeholder %s.%s>" % (self._module, type(self).__name__)


_placeholders = {}


def _placeholder_class(module, name):
    key = (module, name)
    if key not in _placeholders:
        _placeholders[key] = type(name, (_Placeholder,), {"_module": module})
    return _placeholders[key]


class _StubModule(types.ModuleType):
    """A module that is not installed: every class in it is a placeholder."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder_class(self.__name__, name)


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports any module under `roots` as a _StubModule (last on sys.meta_path)."""

    def __init__(self):
        self.roots = set()

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        pass


def load_checkpoint(path):
    try:
        import torch
    except ImportError as e:
        raise ConversionError("cannot import torch (%s); run with /usr/bin/python3 "
                              "(Debian's python3-torch)" % e)
    if not os.path.isfile(path):
        raise ConversionError("%s: no such file" % path)
    kwargs = {"map_location": "cpu"}
    try:
        if "weights_only" in inspect.signature(torch.load).parameters:
            kwargs["weights_only"] = False  # the arguments are a pickled Namespace
    except (TypeError, ValueError):
        pass
    # Pickled objects of modules not installed here (omegaconf configs, fairseq
    # classes) are read as placeholders: on each ModuleNotFoundError the
    # missing top-level module is stubbed and the load retried.
    finder = _StubFinder()
    sys.meta_path.append(finder)
    try:
        for _ in range(20):
            try:
                state = torch.load(path, **kwargs)
                break
            except ModuleNotFoundError as e:
                root = (e.name or "").split(".")[0]
                if not root or root in finder.roots:
                    raise ConversionError("%s: cannot load with torch.load: %s" % (path, e))
                finder.roots.add(root)
            except Exception as e:  # torch raises many types for a bad file
                raise ConversionError("%s: cannot load with torch.load: %s: %s" %
                                      (path, type(e).__name__, e))
        else:
            raise ConversionError("%s: cannot load with torch.load: too many missing modules"
                                  % path)
    finally:
        sys.meta_path.remove(finder)
        for name in [m for m in sys.modules if m.split(".")[0] in finder.roots]:
            del sys.modules[name]
    if finder.roots:
        print("note: read objects of modules not installed here (%s) as placeholders" %
              ", ".join(sorted(finder.roots)))
    return state


def _to_plain(value, depth=0):
    """Namespaces, omegaconf configs (real or placeholder) -> dicts and lists."""
    if depth > 50:
        return value
    if isinstance(value, argparse.Namespace):
        return {k: _to_plain(v, depth + 1) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {k: _to_plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v, depth + 1) for v in value]
    if isinstance(value, _Placeholder):
        state = value.__dict__.get("_ph_state")
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]
        if isinstance(state, dict):
            if "_content" in state:  # omegaconf DictConfig / ListConfig
                content = state["_content"]
                if isinstance(content, str) and content == "???":
                    return None
                return _to_plain(content, depth + 1)
            if "_val" in state:  # omegaconf value node
                return _to_plain(state["_val"], depth + 1)
        return value
    if type(value).__module__.startswith("omegaconf"):
        try:
            from omegaconf import OmegaConf
            if OmegaConf.is_config(value):
                try:
                    container = OmegaConf.to_container(value, resolve=True)
                except Exception:
                    container = OmegaConf.to_container(value, resolve=False)
                return _to_plain(container, depth + 1)
        except ImportError:
            pass
    return value


_INTERPOLATION = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


def _resolve_interpolations(section, root):
    """Resolves simple "${task.x}" references (dataclass-based fairseq configs)."""
    out = {}
    for key, value in section.items():
        for _ in range(10):
            m = _INTERPOLATION.match(value) if isinstance(value, str) else None
            if not m:
                break
            node = root
            for part in m.group(1).split("."):
                node = node.get(part) if isinstance(node, dict) else None
            value = node
        out[key] = value
    return out


# Task-level arguments a "cfg" checkpoint may keep under cfg["task"] only.
_TASK_KEYS = ("max_source_positions", "max_target_positions")


def read_arguments(state, path):
    """Returns (flat dict of model arguments, description of where they came from)."""
    if not isinstance(state, dict):
        raise ConversionError("%s: the checkpoint is a %s, not a dict: not a fairseq checkpoint"
                              % (path, type(state).__name__))
    keys = ", ".join(sorted(map(str, state.keys()))) or "none"
    if "model" not in state:
        raise ConversionError(
            "%s: no \"model\" entry (keys: %s); a fairseq checkpoint (checkpoint_best.pt) "
            "holds the state dict under \"model\"" % (path, keys))
    if state.get("args") is not None:
        args = _to_plain(state["args"])
        if not isinstance(args, dict):
            raise ConversionError("%s: \"args\" is a %s, expected an argparse.Namespace"
                                  % (path, type(state["args"]).__name__))
        return args, "args"
    if state.get("cfg") is not None:
        cfg = _to_plain(state["cfg"])
        if not isinstance(cfg, dict):
            raise ConversionError("%s: \"cfg\" is a %s, expected a dict or omegaconf config"
                                  % (path, type(state["cfg"]).__name__))
        model = cfg.get("model")
        if not isinstance(model, dict):
            raise ConversionError("%s: \"cfg\" has no \"model\" section with the model arguments "
                                  "(cfg keys: %s)" % (path, ", ".join(sorted(cfg))))
        args = _resolve_interpolations(model, cfg)
        if args.get("arch") is None and args.get("_name") is not None:
            args["arch"] = args["_name"]
        task = cfg.get("task")
        if isinstance(task, dict):
            task = _resolve_interpolations(task, cfg)
            for key in _TASK_KEYS:
                if args.get(key) is None and task.get(key) is not None:
                    args[key] = task[key]
        return args, "cfg[\"model\"]"
    raise ConversionError(
        "%s: neither \"args\" nor \"cfg\" holds the training arguments (keys: %s)" % (path, keys))


# --------------------------------------------------------------------------
# Architecture arguments


# Defaults of s2t_decoder_only_MTLA_xm() followed by base_architecture() in
# fairseq/models/speech_to_text/s2t_transformer.py, and of the speech_to_text
# task; the same as engine/speech/speech_config.cc.
_DEFAULTS = collections.OrderedDict([
    ("decoder_type", "MTLA"),
    ("conv_version", "s2t_transformer"),
    ("activation_fn", "relu"),
    ("use_audio_input", False),
    ("layernorm_embedding", False),
    ("decoder_normalize_before", True),
    ("no_decoder_final_norm", False),
    ("no_scale_embedding", False),
    ("input_feat_per_channel", 80),
    ("input_channels", 1),
    ("conv_kernel_sizes", "5,5"),
    ("conv_channels", 1024),
    ("encoder_embed_dim", 512),
    ("encoder_ffn_embed_dim", 2048),
    ("encoder_layers", 12),
    ("encoder_attention_heads", 8),
    ("encoder_normalize_before", True),
    ("max_source_positions", 6000),
    ("max_target_positions", 1024),
    ("encoder_projector_ds_rate", 1),
    ("decoder_embed_dim", 512),
    ("decoder_ffn_embed_dim", None),  # encoder_ffn_embed_dim
    ("decoder_layers", 9),
    ("share_decoder_input_output_embed", False),
    ("decoder_attention_heads", 8),
    ("decoder_q_lora_rank", 0),
    ("decoder_kv_lora_rank", 256),
    ("decoder_qk_nope_head_dim", 64),
    ("decoder_qk_rope_head_dim", 32),
    ("decoder_v_head_dim", 64),
    ("decoder_down_rate", 2),
])

# Required values: the server implements only these (speech_config.cc rejects
# the others); checked here too so that a conversion fails early.
_REQUIRED_VALUES = {
    "decoder_type": ("MTLA", "the server implements the MTLA decoder only"),
    "conv_version": ("s2t_transformer", "the server implements the Conv1d subsampler only"),
    "activation_fn": ("relu", "the server's FFNs use ReLU"),
    "use_audio_input": (False, "the WavLM front-end is not served (80-dim fbank input only)"),
    "layernorm_embedding": (False, "an embedding LayerNorm is not supported"),
    "decoder_normalize_before": (True, "the MTLA decoder is pre-LN with a final LayerNorm"),
    "no_decoder_final_norm": (False, "the MTLA decoder ends with a LayerNorm"),
    "encoder_normalize_before": (True, "the encoder is pre-LN with a final LayerNorm"),
}

_BOOL_KEYS = {k for k, v in _DEFAULTS.items() if isinstance(v, bool)}
_STR_KEYS = {"decoder_type", "conv_version", "activation_fn", "conv_kernel_sizes"}
_INT_KEYS = set(_DEFAULTS) - _BOOL_KEYS - _STR_KEYS


def _typed(key, value):
    if key in _BOOL_KEYS:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConversionError("argument %s: expected true/false, got %r" % (key, value))
    if key in _INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConversionError("argument %s: expected an integer, got %r" % (key, value))
        return int(value)
    if key == "conv_kernel_sizes":
        if isinstance(value, (list, tuple)):
            value = ",".join(str(int(k)) for k in value)
        if not isinstance(value, str) or not re.match(r"^\s*\d+(\s*,\s*\d+)*\s*$", value):
            raise ConversionError("argument conv_kernel_sizes: expected \"K,K,...\", got %r"
                                  % (value,))
        return ",".join(k.strip() for k in value.split(","))
    if not isinstance(value, str):
        raise ConversionError("argument %s: expected a string, got %r" % (key, value))
    return value


def resolve_config(args, state_dict, options):
    """The config.json object: every key the server reads, resolved."""
    arch = args.get("arch")
    if arch is None:
        raise ConversionError("the training arguments name no architecture (\"arch\")")
    if arch != ARCH:
        raise ConversionError(
            "unsupported arch \"%s\": the server serves only %s (S2TTransformerModel with the "
            "MTLA decoder)" % (arch, ARCH))

    config = collections.OrderedDict()
    config["arch"] = ARCH
    for key, default in _DEFAULTS.items():
        value = args.get(key)
        if value is None:
            value = default
        if value is None and key == "decoder_ffn_embed_dim":
            value = config["encoder_ffn_embed_dim"]
        config[key] = _typed(key, value)

    for key, (want, why) in _REQUIRED_VALUES.items():
        if config[key] != want:
            raise ConversionError("argument %s=%s is not supported: must be %s (%s)" %
                                  (key, json.dumps(config[key]), json.dumps(want), why))
    # Options the engine's config does not see but that would change the model.
    e = config["decoder_embed_dim"]
    for key in ("decoder_input_dim", "decoder_output_dim"):
        if args.get(key) is not None and args[key] != e:
            raise ConversionError("argument %s=%s differs from decoder_embed_dim=%d: projections "
                                  "around the decoder are not supported" % (key, args[key], e))
    if args.get("adaptive_softmax_cutoff"):
        raise ConversionError("adaptive softmax (adaptive_softmax_cutoff=%s) is not supported"
                              % args["adaptive_softmax_cutoff"])
    if args.get("adaptive_input"):
        raise ConversionError("adaptive input embeddings are not supported")

    embed = state_dict.get("decoder.embed_tokens.weight")
    if embed is None or not hasattr(embed, "shape") or len(embed.shape) != 2:
        raise ConversionError("the state dict has no 2-D decoder.embed_tokens.weight "
                              "(needed for vocab_size)")
    config["vocab_size"] = int(embed.shape[0])
    if args.get("tgt_dict_size") is not None and args["tgt_dict_size"] != config["vocab_size"]:
        raise ConversionError("tgt_dict_size=%s in the arguments but decoder.embed_tokens.weight "
                              "has %d rows" % (args["tgt_dict_size"], config["vocab_size"]))
    # fairseq's Dictionary: <s>=0 <pad>=1 </s>=2 <unk>=3.
    config["bos"], config["pad"], config["eos"], config["unk"] = 0, 1, 2, 3
    config["cmvn"] = options.cmvn
    if options.source_language:
        config["source_language"] = options.source_language
    if options.target_language:
        config["target_language"] = options.target_language
    return config


# --------------------------------------------------------------------------
# Tensors


def expected_tensors(c):
    """name -> shape of every tensor the server loads for config `c`."""
    t = collections.OrderedDict()
    e, d = c["encoder_embed_dim"], c["decoder_embed_dim"]
    kernels = [int(k) for k in c["conv_kernel_sizes"].split(",")]
    in_ch = c["input_feat_per_channel"] * c["input_channels"]
    for i, k in enumerate(kernels):
        out = c["conv_channels"] if i + 1 < len(kernels) else 2 * e
        t["encoder.subsample.conv_layers.%d.weight" % i] = (out, in_ch, k)
        t["encoder.subsample.conv_layers.%d.bias" % i] = (out,)
        in_ch = out // 2

    def linear(name, n_in, n_out, bias=True):
        t[name + ".weight"] = (n_out, n_in)
        if bias:
            t[name + ".bias"] = (n_out,)

    def norm(name, n):
        t[name + ".weight"] = (n,)
        t[name + ".bias"] = (n,)

    for l in range(c["encoder_layers"]):
        p = "encoder.transformer_layers.%d." % l
        norm(p + "self_attn_layer_norm", e)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear(p + "self_attn." + proj, e, e)
        norm(p + "final_layer_norm", e)
        linear(p + "fc1", e, c["encoder_ffn_embed_dim"])
        linear(p + "fc2", c["encoder_ffn_embed_dim"], e)
    norm("encoder.layer_norm", e)

    linear("decoder.projector.linear1", e * c["encoder_projector_ds_rate"], d // 2)
    linear("decoder.projector.linear2", d // 2, d)
    v = c["vocab_size"]
    t["decoder.embed_tokens.weight"] = (v, d)
    if not c["share_decoder_input_output_embed"]:
        t["decoder.output_projection.weight"] = (v, d)
    norm("decoder.layer_norm", d)
    h = c["decoder_attention_heads"]
    r = c["decoder_kv_lora_rank"]
    qk = c["decoder_qk_nope_head_dim"] + c["decoder_qk_rope_head_dim"]
    for l in range(c["decoder_layers"]):
        p = "decoder.layers.%d." % l
        a = p + "self_attn."
        if c["decoder_q_lora_rank"] == 0:
            linear(a + "wq", d, h * qk, bias=False)
        else:
            q = c["decoder_q_lora_rank"]
            linear(a + "wq_a", d, q, bias=False)
            norm(a + "q_norm", q)
            linear(a + "wq_b", q, h * qk, bias=False)
        linear(a + "wkv_a", d, r + c["decoder_qk_rope_head_dim"], bias=False)
        norm(a + "kv_norm", r)
        linear(a + "wkv_b", r, h * (c["decoder_qk_nope_head_dim"] + c["decoder_v_head_dim"]),
               bias=False)
        linear(a + "wo", h * c["decoder_v_head_dim"], d, bias=False)
        linear(a + "hypernet_down.fc_p", r, r // 4)
        linear(a + "hypernet_down.fc_c", r, r // 4)
        norm(p + "self_attn_layer_norm", d)
        linear(p + "fc1", d, c["decoder_ffn_embed_dim"])
        linear(p + "fc2", c["decoder_ffn_embed_dim"], d)
        norm(p + "final_layer_norm", d)
    return t


def _unused_reason(name, config):
    """Why the server does not read `name` (None when it is not a known unused entry)."""
    last = name.rsplit(".", 1)[-1]
    if last == "version" or last == "_float_tensor":
        return "buffer"
    if ".embed_positions." in name:
        return "positional-embedding buffer (sinusoidal positions are computed)"
    if name.startswith("encoder.ctc_proj."):
        return "CTC head (training only)"
    if name == "decoder.output_projection.weight" and config["share_decoder_input_output_embed"]:
        return "tied to decoder.embed_tokens.weight"
    return None


def select_tensors(state_dict, config, drop_unknown):
    """Returns (name -> tensor to write, list of (name, reason) dropped)."""
    import torch

    expected = expected_tensors(config)
    keep, dropped, unknown = {}, [], []
    for name, value in state_dict.items():
        if not isinstance(name, str) or not torch.is_tensor(value):
            dropped.append((str(name), "not a tensor (%s)" % type(value).__name__))
            continue
        if name in expected:
            keep[name] = value
            continue
        reason = _unused_reason(name, config)
        if reason is None:
            unknown.append(name)
        else:
            dropped.append((name, reason))

    if unknown:
        if not drop_unknown:
            shown = ", ".join(sorted(unknown)[:8]) + (", ..." if len(unknown) > 8 else "")
            raise ConversionError(
                "%d tensor(s) in the state dict are not read by the server: %s. They mean the "
                "checkpoint computes something the server does not (or the arguments do not "
                "match the weights, e.g. encoder_layers/decoder_layers); pass --drop-unknown "
                "to drop them anyway" % (len(unknown), shown))
        dropped.extend((n, "not read by the server (--drop-unknown)") for n in unknown)

    missing = [n for n in expected if n not in keep]
    if missing:
        shown = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
        raise ConversionError("%d tensor(s) the server loads are missing from the state dict: %s"
                              % (len(missing), shown))
    for name, shape in expected.items():
        got = tuple(keep[name].shape)
        if got != tuple(shape):
            raise ConversionError("tensor %s has shape %s, but the arguments imply %s" %
                                  (name, list(got), list(shape)))
        if not keep[name].is_floating_point():
            raise ConversionError("tensor %s has dtype %s, expected a floating-point tensor" %
                                  (name, keep[name].dtype))

    tied = "decoder.output_projection.weight"
    if config["share_decoder_input_output_embed"] and tied in state_dict \
            and torch.is_tensor(state_dict[tied]):
        if not torch.equal(state_dict[tied].float(),
                           state_dict["decoder.embed_tokens.weight"].float()):
            raise ConversionError("share_decoder_input_output_embed is set but "
                                  "decoder.output_projection.weight differs from "
                                  "decoder.embed_tokens.weight")
    return keep, dropped


def write_safetensors(path, tensors, fp16, metadata):
    """Writes `tensors` (name -> torch tensor) as F32 (or F16) safetensors."""
    import numpy as np
    import torch

    dtype_name, torch_dtype = ("F16", torch.float16) if fp16 else ("F32", torch.float32)
    arrays = {}
    for name in sorted(tensors):
        t = tensors[name].detach().cpu()
        # float32 first (bfloat16 has no numpy dtype), then the output dtype.
        a = t.to(torch.float32).to(torch_dtype).contiguous().numpy()
        if not np.all(np.isfinite(a)):
            where = "after conversion to float16" if fp16 and np.all(
                np.isfinite(t.to(torch.float32).numpy())) else "in the checkpoint"
            raise ConversionError("tensor %s has non-finite values %s" % (name, where))
        arrays[name] = a.astype(a.dtype.newbyteorder("<"), copy=False)

    header = {"__metadata__": metadata}
    offset = 0
    for name, a in arrays.items():
        header[name] = {"dtype": dtype_name, "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for a in arrays.values():
            f.write(a.tobytes())
    os.replace(tmp, path)
    return offset, dtype_name


# --------------------------------------------------------------------------
# SentencePiece model check (protobuf wire format; no sentencepiece module needed)


def _varint(data, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data):
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(data, pos)
            if pos + n > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield number, wire, value


def inspect_spm(path):
    """(piece count, {bos, pad, eos, unk}) of a SentencePiece model file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConversionError("%s: cannot read the SentencePiece model: %s" % (path, e))
    ids = {"unk": 0, "bos": 1, "eos": 2, "pad": -1}  # TrainerSpec defaults
    numbers = {40: "unk", 41: "bos", 42: "eos", 43: "pad"}
    pieces = 0
    try:
        for number, wire, value in _fields(data):
            if number == 1 and wire == 2:
                pieces += 1
            elif number == 2 and wire == 2:
                for n, w, v in _fields(value):
                    if n in numbers and w == 0:
                        ids[numbers[n]] = v - (1 << 64) if v >= 1 << 63 else v
    except ValueError as e:
        raise ConversionError("%s: not a SentencePiece model (%s)" % (path, e))
    if pieces == 0:
        raise ConversionError("%s: not a SentencePiece model (no pieces)" % path)
    return pieces, ids


# --------------------------------------------------------------------------


def _count(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def convert(options):
    state = load_checkpoint(options.checkpoint)
    args, source = read_arguments(state, options.checkpoint)
    state_dict = state["model"]
    if not isinstance(state_dict, dict):
        raise ConversionError("%s: \"model\" is a %s, expected a state dict"
                              % (options.checkpoint, type(state_dict).__name__))
    config = resolve_config(args, state_dict, options)
    tensors, dropped = select_tensors(state_dict, config, options.drop_unknown)

    spm_info = None
    if options.spm:
        pieces, ids = inspect_spm(options.spm)
        want = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}
        if ids != want:
            raise ConversionError(
                "%s: special ids are bos %d, pad %d, eos %d, unk %d; the server needs fairseq's "
                "0, 1, 2, 3 (train with --bos_id=0 --pad_id=1 --eos_id=2 --unk_id=3)"
                % (options.spm, ids["bos"], ids["pad"], ids["eos"], ids["unk"]))
        spm_info = pieces

    os.makedirs(options.out_dir, exist_ok=True)
    metadata = {"format": "pt", "converted_by": PROG,
                "source": os.path.basename(options.checkpoint)}
    nbytes, dtype_name = write_safetensors(os.path.join(options.out_dir, "model.safetensors"),
                                           tensors, options.fp16, metadata)
    config_path = os.path.join(options.out_dir, "config.json")
    with open(config_path + ".tmp", "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(config_path + ".tmp", config_path)
    if options.spm:
        shutil.copyfile(options.spm, os.path.join(options.out_dir, "spm.model"))

    # Summary.
    in_dtypes = collections.Counter(str(t.dtype).replace("torch.", "") for t in tensors.values())
    params = sum(_count(t.shape) for t in tensors.values())
    print("%s: %s -> %s" % (PROG, options.checkpoint, options.out_dir))
    print("  arguments from %s: arch %s" % (source, config["arch"]))
    print("  encoder: %d layers, dim %d, ffn %d, %d heads, conv kernels %s (%d channels), input %d"
          % (config["encoder_layers"], config["encoder_embed_dim"],
             config["encoder_ffn_embed_dim"], config["encoder_attention_heads"],
             config["conv_kernel_sizes"], config["conv_channels"],
             config["input_feat_per_channel"] * config["input_channels"]))
    print("  decoder: %d MTLA layers, dim %d, ffn %d, %d heads, kv_lora_rank %d, rope %d, "
          "down_rate %d, vocab %d%s" %
          (config["decoder_layers"], config["decoder_embed_dim"], config["decoder_ffn_embed_dim"],
           config["decoder_attention_heads"], config["decoder_kv_lora_rank"],
           config["decoder_qk_rope_head_dim"], config["decoder_down_rate"], config["vocab_size"],
           ", tied output projection" if config["share_decoder_input_output_embed"] else ""))
    print("  model.safetensors: %d tensors, %d parameters, %s (from %s), %.1f MiB" %
          (len(tensors), params, dtype_name,
           ", ".join("%s x%d" % kv for kv in sorted(in_dtypes.items())), nbytes / 2**20))
    if dropped:
        print("  dropped %d state-dict entries:" % len(dropped))
        for name, reason in sorted(dropped):
            print("    %s (%s)" % (name, reason))
    langs = "%s -> %s" % (config.get("source_language", "?"), config.get("target_language", "?"))
    print("  config.json: %d keys, cmvn %s, languages %s" % (len(config), config["cmvn"], langs))
    if spm_info is not None:
        note = "" if spm_info == config["vocab_size"] else \
            " (WARNING: the model's vocabulary has %d entries)" % config["vocab_size"]
        print("  spm.model: %d pieces%s" % (spm_info, note))
    else:
        print("  spm.model: not written (no --spm); the server then returns token ids only")
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a fairseq checkpoint of the MTLA speech-translation model "
                    "(arch %s) into a directory mtla-server serves." % ARCH,
        epilog="See the module docstring (head of this file) for details.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT_PT", help="fairseq checkpoint (.pt)")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output model directory")
    parser.add_argument("--spm", metavar="SPM_MODEL", help="SentencePiece model to copy")
    parser.add_argument("--source-language", metavar="LANG", default="")
    parser.add_argument("--target-language", metavar="LANG", default="")
    parser.add_argument("--cmvn", choices=("utterance", "none"), default="utterance",
                        help="feature normalisation of the data config (default: utterance)")
    parser.add_argument("--fp16", action="store_true", help="write F16 instead of F32 tensors")
    parser.add_argument("--drop-unknown", action="store_true",
                        help="drop state-dict tensors the server does not read")
    return parser.parse_args(argv)


def main(argv=None):
    options = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return convert(options)
    except ConversionError as e:
        print("%s: error: %s" % (PROG, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
