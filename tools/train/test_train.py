"""Unit tests of train.py's checkpoint handling (run: python3 -m unittest
discover tools/train)."""
import os
import tempfile
import unittest

import torch

import train
from test_st_model import small_model


class FinalWeightsTest(unittest.TestCase):
    def test_keeps_only_the_last_epochs(self):
        model = small_model(2)
        with tempfile.TemporaryDirectory() as out:
            for epoch in range(1, 6):
                train.keep_epoch_weights(out, model, model.dims, epoch, keep=3)
            self.assertEqual(sorted(os.listdir(out)), ["epoch3.pt", "epoch4.pt", "epoch5.pt"])

    def _three_epochs(self, out):
        """Epochs 1-3 whose weights are all-1, all-2 and all-3; the model holds epoch 3's."""
        model = small_model(2)
        for epoch in (1, 2, 3):
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float(epoch))
            train.keep_epoch_weights(out, model, model.dims, epoch, keep=3)
        return model

    def test_average_wins_when_its_dev_accuracy_is_higher(self):
        with tempfile.TemporaryDirectory() as out:
            model = self._three_epochs(out)
            # The "dev accuracy" prefers weights near 2 (the average of 1, 2, 3).
            score = lambda m: -abs(float(next(m.parameters()).flatten()[0]) - 2.0)
            train.write_final(out, model, model.dims, 3, 3, score)
            final = torch.load(os.path.join(out, "final.pt"))
            self.assertIn("average of epochs 1-3", final["source"])
            for name, value in final["model"].items():
                if name in dict(model.named_parameters()):
                    self.assertTrue(torch.allclose(value, torch.full_like(value, 2.0)), name)
            # The live model is left at the last epoch's weights.
            self.assertEqual(float(next(model.parameters()).flatten()[0]), 3.0)

    def test_last_epoch_wins_otherwise(self):
        with tempfile.TemporaryDirectory() as out:
            model = self._three_epochs(out)
            score = lambda m: float(next(m.parameters()).flatten()[0])  # higher is better
            train.write_final(out, model, model.dims, 3, 3, score)
            final = torch.load(os.path.join(out, "final.pt"))
            self.assertEqual(final["source"], "epoch 3 weights")
            first = next(iter(dict(model.named_parameters())))
            self.assertTrue(torch.all(final["model"][first] == 3.0))


if __name__ == "__main__":
    unittest.main()
