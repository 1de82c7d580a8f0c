#!/usr/bin/env python3
"""Makes a small LlamaMTLA test model that ships a SentencePiece tokenizer, and
the references the text tests compare against, into OUT_DIR:

  tokenizer.model   SentencePiece unigram, 320 pieces, byte fallback (so rare
                    characters become several byte tokens), LLaMA's special
                    ids: <unk>=0, <s>=1, </s>=2, no pad; trained here by
                    Debian's python3-sentencepiece on a generated corpus
  config.json       LlamaMTLA dims (tiny), vocab_size 320, bos 1, eos 2
  model.safetensors random weights, written by `mtla-generate
                    --write_random_model --random_model_config`, then
                    scripted: every layer's attention and MLP output
                    projections are zeroed, so the last hidden state is the
                    current token's embedding, and lm_head maps the prompt's
                    last token to the first token of SCRIPT and each token of
                    SCRIPT to the next (then </s>): greedy decoding writes
                    SCRIPT, whose rare characters are several byte tokens
  references.json   {"vocab_size", "bos_id", "eos_id", "unk_id", "pad_id",
                     "encode": [{"text", "ids", "pieces"}],
                     "decode": [{"ids", "text"}],
                     "scripted": {"prompt", "prompt_ids", "generated_ids",
                                  "generated_text"}}: python3-sentencepiece's
                    own encodings and decodings (the reference for the
                    plugin), with byte-fallback texts and multi-byte
                    characters

Nothing here is committed; ctest runs this as a fixture (tests/text).

usage: make_spm_text_model.py MTLA_GENERATE OUT_DIR
"""
import json
import os
import random
import struct
import subprocess
import sys

import numpy as np

try:
    import sentencepiece as spm
except ImportError:
    print("SKIP: python3-sentencepiece is not installed (tools/setup.sh)")
    sys.exit(77)

VOCAB = 320
PROMPT = "the train leaves at nine"
SCRIPT = "schön✓漢🙂"


def script_weights(path, sp, prompt_ids, config):
    """Rewrites the checkpoint at `path` so that greedy decoding after
    `prompt_ids` yields the tokens of SCRIPT, then </s>; returns those ids."""
    script_ids = sp.encode(SCRIPT, out_type=int)
    chain = [prompt_ids[-1]] + script_ids
    if len(set(chain)) != len(chain) or sp.eos_id() in chain:
        sys.exit(f"SCRIPT's tokens must be distinct and differ from the prompt's last: {chain}")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = bytearray(f.read())

    def tensor(name):
        h = header[name]
        assert h["dtype"] == "F32", h
        begin, end = h["data_offsets"]
        return np.frombuffer(data, dtype="<f4", count=(end - begin) // 4, offset=begin).reshape(h["shape"])

    for i in range(config["num_hidden_layers"]):
        for name in (f"model.layers.{i}.self_attn.wo.weight", f"model.layers.{i}.mlp.down_proj.weight"):
            tensor(name)[...] = 0.0
    embed = tensor("model.embed_tokens.weight")
    norm = tensor("model.norm.weight")
    head = tensor("lm_head.weight")
    head[...] = 0.0
    for current, following in zip(chain, chain[1:] + [sp.eos_id()]):
        e = embed[current] * norm
        head[following] = 8.0 * e / np.linalg.norm(e)
    with open(path, "wb") as f:
        raw = json.dumps(header).encode()
        f.write(struct.pack("<Q", len(raw)) + raw + bytes(data))
    return script_ids + [sp.eos_id()]


def corpus_lines():
    rng = random.Random(17)
    words_en = ("the train leaves at nine and the station is near the old bridge over "
                "river city morning evening ticket price window seat coffee").split()
    words_de = "der Zug fährt um neun Uhr ab Bahnhof Brücke über Fluß Straße Größe schön Grüße Käse".split()
    words_fr = "le café est très bon à côté de la gare où les élèves déjeunent".split()
    lines = []
    for i in range(400):
        n = rng.randint(4, 12)
        pool = (words_en, words_de, words_fr)[i % 3]
        lines.append(" ".join(rng.choice(pool) for _ in range(n)) + f" {i % 10}.")
    # A few CJK and symbol lines: frequent enough for some characters to get
    # pieces, while rarer ones fall back to bytes.
    for i in range(30):
        lines.append("日本語のテキスト 東京 駅 " + str(i))
    return lines


def main():
    generate, out = sys.argv[1:3]
    os.makedirs(out, exist_ok=True)
    corpus = os.path.join(out, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(corpus_lines()) + "\n")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=os.path.join(out, "tokenizer"), vocab_size=VOCAB,
        model_type="unigram", byte_fallback=True, character_coverage=0.995,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2,
        train_extremely_large_corpus=False)
    os.remove(os.path.join(out, "tokenizer.vocab"))
    os.remove(corpus)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
    assert sp.get_piece_size() == VOCAB, sp.get_piece_size()

    config = {
        "model_type": "llama-mtla", "architectures": ["LlamaMTLAForCausalLM"],
        "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
        "intermediate_size": 128, "vocab_size": VOCAB, "q_lora_rank": 0, "kv_lora_rank": 32,
        "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "down_rate": 2,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 512,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    }
    config_path = os.path.join(out, "random_config.json")
    with open(config_path, "w") as f:
        json.dump(config, f, indent=1)
    subprocess.run([generate, f"--write_random_model={out}", f"--random_model_config={config_path}"],
                   check=True, stdout=subprocess.DEVNULL)
    os.remove(config_path)
    prompt_ids = sp.encode(PROMPT, out_type=int)
    generated = script_weights(os.path.join(out, "model.safetensors"), sp, prompt_ids, config)

    texts = [
        "the train leaves at nine",
        "Der Zug fährt um neun Uhr ab, schöne Grüße!",
        "le café est très bon",
        "日本語のテキスト",
        "漢字 𝄞 ✓ 🙂 ñ",          # characters outside the vocabulary: byte pieces
        "  leading and  double  spaces ",
        "",
    ]
    encode = [{"text": t, "ids": sp.encode(t, out_type=int), "pieces": sp.encode(t, out_type=str)}
              for t in texts]
    rng = random.Random(5)
    decode = []
    for n in (1, 3, 8, 20, 40):
        ids = [rng.randrange(VOCAB) for _ in range(n)]
        decode.append({"ids": ids, "text": sp.decode(ids)})
    # Byte pieces that make up a character only together, and cut short.
    for e in encode:
        if any(p.startswith("<0x") for p in e["pieces"]):
            decode.append({"ids": e["ids"], "text": sp.decode(e["ids"])})
            decode.append({"ids": e["ids"][:-1], "text": sp.decode(e["ids"][:-1])})
    references = {"vocab_size": VOCAB, "bos_id": sp.bos_id(), "eos_id": sp.eos_id(),
                  "unk_id": sp.unk_id(), "pad_id": sp.pad_id(), "encode": encode, "decode": decode,
                  "scripted": {"prompt": PROMPT, "prompt_ids": prompt_ids, "generated_ids": generated,
                               "generated_text": sp.decode(generated)}}
    with open(os.path.join(out, "references.json"), "w", encoding="utf-8") as f:
        json.dump(references, f, ensure_ascii=False, indent=1)
    print(f"wrote {out}: tokenizer.model ({VOCAB} pieces), config.json, model.safetensors, "
          "references.json")


if __name__ == "__main__":
    main()
