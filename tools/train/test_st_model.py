"""Unit tests of the PyTorch speech-translation model (run: python3 -m unittest
discover tools/train). The engine-equivalence test is the conformance case
models/en-de-synthetic (mtla-conformance fairseq-st), which ctest runs."""
import unittest

import torch

from st_model import EOS, PAD, ModelDims, SpeechTranslationModel


def small_model(down_rate, projector_ds_rate=1):
    torch.manual_seed(down_rate)
    dims = ModelDims(vocab=50, embed=32, heads=2, ffn=64, encoder_layers=1, conv_channels=16,
                     decoder_layers=2, kv_lora_rank=16, rope_dim=4, nope_dim=8, v_dim=8,
                     down_rate=down_rate, projector_ds_rate=projector_ds_rate)
    return SpeechTranslationModel(dims, dropout=0.0).eval()


class BatchingTest(unittest.TestCase):
    def test_padded_batch_equals_one_by_one(self):
        """Padding (frames and tokens) changes no real position's logits, for any s
        and projector downsampling (odd and even frame counts)."""
        for s, ds in ((1, 1), (2, 1), (3, 1), (2, 2), (3, 3)):
            model = small_model(s, ds)
            lengths, token_lengths = [37, 20, 29], [5, 9, 1]
            feats = [torch.randn(n, 80) for n in lengths]
            tokens = [torch.randint(4, 50, (n,)) for n in token_lengths]
            x = torch.zeros(3, max(lengths), 80)
            y = torch.full((3, max(token_lengths)), PAD)
            for i in range(3):
                x[i, :lengths[i]] = feats[i]
                y[i, :token_lengths[i]] = tokens[i]
            with torch.no_grad():
                batched = model(x, torch.tensor(lengths), y, torch.tensor(token_lengths))
                for i in range(3):
                    alone = model(feats[i][None], torch.tensor([lengths[i]]), tokens[i][None],
                                  torch.tensor([token_lengths[i]]))
                    diff = (batched[i, :token_lengths[i]] - alone[0]).abs().max()
                    self.assertLess(float(diff), 1e-5, f"s={s} ds={ds} sequence {i}")

    def test_greedy_ends_with_eos_and_respects_max_len(self):
        model = small_model(2)
        result = model.decode_greedy(torch.randn(40, 80), max_len_b=6)
        self.assertEqual(result["tokens"][-1], EOS)
        self.assertLessEqual(len(result["tokens"]), 7)
        self.assertNotIn(PAD, result["tokens"])
        self.assertEqual(result["step_logits"].shape, (len(result["tokens"]), 50))

    def test_causal_prefix_of_tokens(self):
        """Logits at token i do not depend on later tokens (stride-aware mask)."""
        model = small_model(3)
        feats = torch.randn(1, 30, 80)
        tokens = torch.randint(4, 50, (1, 8))
        with torch.no_grad():
            full = model(feats, torch.tensor([30]), tokens, torch.tensor([8]))
            for n in (1, 4, 7):
                part = model(feats, torch.tensor([30]), tokens[:, :n], torch.tensor([n]))
                self.assertLess(float((full[0, :n] - part[0]).abs().max()), 1e-5)


if __name__ == "__main__":
    unittest.main()
