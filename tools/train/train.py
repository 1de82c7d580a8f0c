#!/usr/bin/env python3
"""Trains the speech-translation model (st_model.py) on the pipeline's data.

  train.py --data DATA_DIR --out CKPT_DIR [--epochs N] [--device auto|cpu|cuda]

DATA_DIR (written by pipeline.sh): {train,dev}.tsv from synthesize.py, their
features feat_{train,dev}.f32/.tsv from mtla-features, and spm.model.
CKPT_DIR/checkpoint.pt is written after every epoch (model, optimizer,
schedule, epoch, dims); a rerun with the same arguments resumes from it, and
the run is deterministic per epoch (batch order and augmentation draw from
seed + epoch). CKPT_DIR/log.tsv gets one line per epoch. The weights of the
last --average-last epochs are kept as CKPT_DIR/epoch<N>.pt; at the end
CKPT_DIR/final.pt holds their average or the last epoch's weights, whichever
has the higher teacher-forced dev token accuracy (export and evaluate use it).

Loss: label-smoothed cross-entropy of the German tokens plus, with weight
--ctc-weight, a CTC loss of the English words on the encoder output (a
training-only linear head over the English word list, blank 0; not exported).
The CTC term teaches the encoder to align with the speech early, so the
decoder learns to read the prefix instead of acting as a language model. A
checkpoint written without the CTC head resumes with a fresh head and a fresh
optimizer state. On a CUDA machine the
same script runs on the GPU (--device auto picks it).
"""
import argparse
import dataclasses
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

import corpus
from st_model import EOS, PAD, ModelDims, SpeechTranslationModel


def load_split(data_dir, split, spm_model):
    """-> features, German piece ids, English word lists."""
    utterances = corpus.read_utterances(os.path.join(data_dir, f"{split}.tsv"))
    paths, feats = corpus.load_features(os.path.join(data_dir, f"feat_{split}"))
    if paths != [u["wav"] for u in utterances]:
        raise RuntimeError(f"feat_{split}.tsv and {split}.tsv list different files")
    ids = corpus.encode_pieces(spm_model, [u["german"] for u in utterances])
    return feats, ids, [u["english"].split() for u in utterances]


def make_batches(feats, max_frames, rng):
    """Length-sorted batches of at most max_frames padded frames, in random order."""
    order = sorted(range(len(feats)), key=lambda i: (feats[i].shape[0], rng.random()))
    batches, current, longest = [], [], 0
    for i in order:
        n = feats[i].shape[0]
        if current and max(longest, n) * (len(current) + 1) > max_frames:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(indices, feats, ids, words=None, word_ids=None, rng=None):
    """Zero-padded features, decoder inputs [EOS, y...] and targets [y..., EOS];
    with `words`, also the concatenated English word ids and their counts (CTC)."""
    b = len(indices)
    t_feat = max(feats[i].shape[0] for i in indices)
    t_tok = max(len(ids[i]) for i in indices) + 1
    x = torch.zeros(b, t_feat, corpus.FEATURE_DIM)
    x_len = torch.zeros(b, dtype=torch.long)
    inputs = torch.full((b, t_tok), PAD, dtype=torch.long)
    targets = torch.full((b, t_tok), PAD, dtype=torch.long)
    y_len = torch.zeros(b, dtype=torch.long)
    for row, i in enumerate(indices):
        f = torch.from_numpy(np.array(feats[i]))
        if rng is not None:
            f = spec_augment(f, rng)
        x[row, :f.shape[0]] = f
        x_len[row] = f.shape[0]
        seq = ids[i]
        inputs[row, :len(seq) + 1] = torch.tensor([EOS] + seq)
        targets[row, :len(seq) + 1] = torch.tensor(seq + [EOS])
        y_len[row] = len(seq) + 1
    if words is None:
        return x, x_len, inputs, targets, y_len
    english = [[word_ids[w] for w in words[i]] for i in indices]
    en_targets = torch.tensor([w for sentence in english for w in sentence], dtype=torch.long)
    en_len = torch.tensor([len(sentence) for sentence in english], dtype=torch.long)
    return x, x_len, inputs, targets, y_len, en_targets, en_len


def spec_augment(f, rng):
    """One frequency mask (<= 8 bins) and two time masks (<= 8 frames), zeros."""
    f = f.clone()
    width = rng.randrange(9)
    start = rng.randrange(corpus.FEATURE_DIM - width + 1)
    f[:, start:start + width] = 0
    for _ in range(2):
        width = rng.randrange(min(9, f.shape[0]))
        start = rng.randrange(f.shape[0] - width + 1)
        f[start:start + width] = 0
    return f


def learning_rate(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def loss_on(model, batch, device, smoothing, ctc_head=None):
    """-> (summed cross-entropy, tokens, correct tokens, summed CTC or None, English words)."""
    x, x_len, inputs, targets, y_len = (t.to(device) for t in batch[:5])
    encoder_out, enc_len = model.encoder(x, x_len)
    logits = model.decoder(encoder_out, enc_len, inputs, y_len)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=PAD, label_smoothing=smoothing, reduction="sum")
    mask = targets != PAD
    correct = ((logits.argmax(-1) == targets) & mask).sum()
    ctc, words = None, 0
    if ctc_head is not None:
        en_targets, en_len = batch[5].to(device), batch[6].to(device)
        log_probs = torch.log_softmax(ctc_head(encoder_out), dim=-1).transpose(0, 1)
        ctc = F.ctc_loss(log_probs, en_targets, enc_len, en_len, blank=0, reduction="sum",
                         zero_infinity=True)
        words = int(en_len.sum())
    return loss, int(mask.sum()), int(correct), ctc, words


@torch.no_grad()
def evaluate(model, feats, ids, device, max_frames):
    model.eval()
    total, tokens, correct = 0.0, 0, 0
    for indices in make_batches(feats, max_frames, random.Random(0)):
        loss, n, c, _, _ = loss_on(model, collate(indices, feats, ids), device, 0.0)
        total, tokens, correct = total + float(loss), tokens + n, correct + c
    model.train()
    return total / tokens, correct / tokens


@torch.no_grad()
def greedy_exact_match(model, feats, ids, count=100):
    """Fraction of the first `count` utterances whose greedy tokens equal the reference."""
    model.eval()
    count = min(count, len(feats))
    exact = 0
    for i in range(count):
        tokens = model.decode_greedy(torch.from_numpy(np.array(feats[i])), max_len_b=64)["tokens"]
        exact += tokens[:-1] == ids[i]
    model.train()
    return exact / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-frames", type=int, default=9000, help="padded frames per batch")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--projector-ds-rate", type=int, default=2,
                        help="encoder frames (40 ms each) per decoder prefix row")
    parser.add_argument("--average-last", type=int, default=3,
                        help="epochs whose weights final.pt may average")
    parser.add_argument("--smoothing", type=float, default=0.1)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--ctc-weight", type=float, default=0.5,
                        help="weight of the English-word CTC loss on the encoder (0: off)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args()

    device = torch.device("cuda" if args.device == "cuda" or (
        args.device == "auto" and torch.cuda.is_available()) else "cpu")
    torch.set_num_threads(args.threads)
    spm_model = os.path.join(args.data, "spm.model")
    train_feats, train_ids, train_words = load_split(args.data, "train", spm_model)
    dev_feats, dev_ids, _ = load_split(args.data, "dev", spm_model)
    word_ids = {w: i + 1 for i, w in enumerate(sorted({w for s in train_words for w in s}))}
    vocab = int(open(os.path.join(args.data, "vocab_size")).read())
    dims = ModelDims(vocab=vocab, projector_ds_rate=args.projector_ds_rate)

    torch.manual_seed(args.seed)
    model = SpeechTranslationModel(dims, dropout=args.dropout).to(device)
    ctc_head = torch.nn.Linear(dims.embed, len(word_ids) + 1).to(device)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(ctc_head.parameters()),
                                  lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    steps_per_epoch = len(make_batches(train_feats, args.max_frames, random.Random(0)))
    total_steps = steps_per_epoch * args.epochs
    os.makedirs(args.out, exist_ok=True)
    checkpoint_path = os.path.join(args.out, "checkpoint.pt")
    start_epoch, step = 0, 0
    if os.path.exists(checkpoint_path):
        state = torch.load(checkpoint_path, map_location=device)
        if state["dims"] != dataclasses.asdict(dims):
            raise SystemExit(f"{checkpoint_path} has other model dims; remove it to start over")
        model.load_state_dict(state["model"])
        if state.get("ctc_head") is not None:
            ctc_head.load_state_dict(state["ctc_head"])
            optimizer.load_state_dict(state["optimizer"])
        else:
            print("checkpoint has no CTC head: fresh head and optimizer state", flush=True)
        start_epoch, step = state["epoch"], state["step"]
        print(f"resuming after epoch {start_epoch} (step {step})", flush=True)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.2f}M parameters, {len(train_feats)} train / {len(dev_feats)} "
          f"dev utterances, {steps_per_epoch} steps per epoch, device {device}, "
          f"{args.threads} threads", flush=True)

    model.train()
    for epoch in range(start_epoch, args.epochs):
        started = time.time()
        rng = random.Random(args.seed * 1000 + epoch)
        torch.manual_seed(args.seed * 1000 + epoch)
        total, tokens, ctc_total, ctc_words = 0.0, 0, 0.0, 0
        for indices in make_batches(train_feats, args.max_frames, rng):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, args.lr, args.warmup)
            batch = collate(indices, train_feats, train_ids, train_words, word_ids, rng)
            loss, n, _, ctc, words = loss_on(model, batch, device, args.smoothing,
                                             ctc_head if args.ctc_weight > 0 else None)
            objective = loss / n if ctc is None else loss / n + args.ctc_weight * ctc / words
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(ctc_head.parameters()),
                                           1.0)
            optimizer.step()
            total, tokens, step = total + float(loss), tokens + n, step + 1
            if ctc is not None:
                ctc_total, ctc_words = ctc_total + float(ctc), ctc_words + words
        dev_loss, dev_acc = evaluate(model, dev_feats, dev_ids, device, args.max_frames)
        dev_exact = greedy_exact_match(model, dev_feats, dev_ids)
        elapsed = time.time() - started
        line = (f"epoch {epoch + 1}/{args.epochs}\ttrain_loss {total / tokens:.4f}\t"
                f"train_ctc {ctc_total / max(1, ctc_words):.4f}\t"
                f"dev_loss {dev_loss:.4f}\tdev_token_acc {dev_acc:.4f}\t"
                f"dev_exact_100 {dev_exact:.2f}\tseconds {elapsed:.0f}")
        print(line, flush=True)
        with open(os.path.join(args.out, "log.tsv"), "a") as log:
            log.write(line + "\n")
        torch.save(dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                        ctc_head=ctc_head.state_dict(),
                        epoch=epoch + 1, step=step, dims=dataclasses.asdict(dims)),
                   checkpoint_path + ".tmp")
        os.replace(checkpoint_path + ".tmp", checkpoint_path)
        keep_epoch_weights(args.out, model, dims, epoch + 1, args.average_last)
    write_final(args.out, model, dims, args.epochs, args.average_last,
                lambda m: evaluate(m, dev_feats, dev_ids, device, args.max_frames)[1])
    print(f"training done: {checkpoint_path}", flush=True)


def epoch_weights_path(out_dir, epoch):
    return os.path.join(out_dir, f"epoch{epoch}.pt")


def keep_epoch_weights(out_dir, model, dims, epoch, keep):
    """Saves this epoch's weights and removes those older than the last `keep`."""
    torch.save(dict(model=model.state_dict(), dims=dataclasses.asdict(dims), epoch=epoch),
               epoch_weights_path(out_dir, epoch))
    stale = epoch_weights_path(out_dir, epoch - keep)
    if os.path.exists(stale):
        os.remove(stale)


def write_final(out_dir, model, dims, last_epoch, keep, dev_accuracy):
    """final.pt: the average of the last `keep` epochs' weights if its dev token
    accuracy beats the last epoch's, else the last epoch's weights."""
    paths = [epoch_weights_path(out_dir, e) for e in range(last_epoch - keep + 1, last_epoch + 1)]
    paths = [p for p in paths if os.path.exists(p)]
    last = {k: v.clone() for k, v in model.state_dict().items()}
    last_acc = dev_accuracy(model)
    chosen, what = last, f"epoch {last_epoch} weights"
    if len(paths) > 1:
        states = [torch.load(p, map_location="cpu")["model"] for p in paths]
        average = {k: sum(s[k].float() for s in states).div(len(states)).to(last[k].dtype)
                   for k in last}
        model.load_state_dict(average)
        average_acc = dev_accuracy(model)
        print(f"dev token accuracy: last epoch {last_acc:.4f}, average of {len(paths)} "
              f"epochs {average_acc:.4f}", flush=True)
        if average_acc > last_acc:
            chosen, what = average, f"average of epochs {last_epoch - len(paths) + 1}-{last_epoch}"
        model.load_state_dict(last)
    torch.save(dict(model=chosen, dims=dataclasses.asdict(dims), source=what),
               os.path.join(out_dir, "final.pt"))
    with open(os.path.join(out_dir, "log.tsv"), "a") as log:
        log.write(f"final.pt\t{what}\n")
    print(f"final.pt: {what}", flush=True)


if __name__ == "__main__":
    main()
