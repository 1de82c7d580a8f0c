#!/usr/bin/env python3
"""Speaks the English side of a corpus with espeak-ng and varies it with sox.

  synthesize.py CORPUS.tsv OUT_DIR --split train|dev|test [--seed N] [--jobs N]

CORPUS.tsv: english <TAB> german per line (tools/train/grammar.py's output).
Writes OUT_DIR/<split>/NNNNN.wav (16 kHz mono PCM16) and OUT_DIR/<split>.tsv:
  wav_path <TAB> english <TAB> german <TAB> voice <TAB> speed <TAB> pitch <TAB> tempo <TAB> gain_db <TAB> snr_db

Contract: deterministic for a given seed and corpus (each utterance draws its
settings from random.Random(seed * 1_000_003 + index)); the test split uses
voice variants, speeds and pitches that never occur in the train and dev splits
(held-out speakers and settings), from the same accents; dev uses the train
settings with its own draws. sox resamples to 16 kHz and
applies tempo and gain without dither (sox's dither is random from run to
run, and would break the determinism); light white noise at the drawn SNR is then added
(numpy), so no two utterances sound alike.
"""
import argparse
import multiprocessing
import os
import random
import subprocess
import wave

import numpy as np

ACCENTS = ["en-us", "en-gb", "en-gb-x-rp", "en-029"]
SETTINGS = {
    "train": dict(variants=["", "m1", "m2", "m4", "m5", "m6", "m7", "f1", "f2", "f4", "f5",
                            "klatt", "klatt3"],
                  speeds=list(range(130, 200, 10)), pitches=list(range(30, 80, 10))),
    "test": dict(variants=["m3", "f3", "klatt2"], speeds=[145, 165, 185], pitches=[45, 55, 65]),
}
SPLITS = ["train", "dev", "test"]
TEMPOS = [0.9, 0.95, 1.0, 1.05, 1.1]
SAMPLE_RATE = 16000


def draw_settings(split, seed, index):
    rng = random.Random(seed * 1_000_003 + index)
    s = SETTINGS[split]
    variant = rng.choice(s["variants"])
    voice = rng.choice(ACCENTS) + (f"+{variant}" if variant else "")
    return dict(voice=voice, speed=rng.choice(s["speeds"]), pitch=rng.choice(s["pitches"]),
                tempo=rng.choice(TEMPOS), gain_db=round(rng.uniform(-9.0, 0.0), 1),
                snr_db=round(rng.uniform(25.0, 45.0), 1), noise_seed=rng.randrange(2**31))


def synthesize(job):
    index, english, path, st = job
    speech = subprocess.run(
        ["espeak-ng", "-v", st["voice"], "-s", str(st["speed"]), "-p", str(st["pitch"]),
         "--stdout", english], check=True, capture_output=True).stdout
    raw = subprocess.run(
        ["sox", "--no-dither", "-t", "wav", "-", "-t", "raw", "-r", str(SAMPLE_RATE), "-e", "signed",
         "-b", "16", "-c", "1", "-", "tempo", str(st["tempo"]), "gain", str(st["gain_db"])],
        input=speech, check=True, capture_output=True).stdout
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    power = max(np.mean(samples ** 2), 1.0)
    noise = np.random.default_rng(st["noise_seed"]).standard_normal(samples.size)
    samples = samples + noise * np.sqrt(power / 10 ** (st["snr_db"] / 10))
    pcm = np.clip(np.round(samples), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return index


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("out_dir")
    parser.add_argument("--split", choices=SPLITS, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with open(args.corpus, encoding="utf-8") as f:
        pairs = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    wav_dir = os.path.join(args.out_dir, args.split)
    os.makedirs(wav_dir, exist_ok=True)
    seed = args.seed * len(SPLITS) + SPLITS.index(args.split)
    settings = "test" if args.split == "test" else "train"
    jobs = []
    for i, (english, _) in enumerate(pairs):
        jobs.append((i, english, os.path.join(wav_dir, f"{i:05d}.wav"),
                     draw_settings(settings, seed, i)))
    with multiprocessing.Pool(args.jobs) as pool:
        for done, _ in enumerate(pool.imap_unordered(synthesize, jobs, chunksize=16), 1):
            if done % 1000 == 0:
                print(f"synthesize {args.split}: {done}/{len(jobs)}", flush=True)
    with open(os.path.join(args.out_dir, f"{args.split}.tsv"), "w", encoding="utf-8") as f:
        for (i, english, path, st), (_, german) in zip(jobs, pairs):
            f.write("\t".join([path, english, german, st["voice"], str(st["speed"]),
                               str(st["pitch"]), str(st["tempo"]), str(st["gain_db"]),
                               str(st["snr_db"])]) + "\n")
    print(f"synthesize {args.split}: {len(jobs)} utterances in {wav_dir}")


if __name__ == "__main__":
    main()
