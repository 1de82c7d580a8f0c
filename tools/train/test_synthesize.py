"""Unit test of synthesize.py's determinism contract (needs espeak-ng and sox,
which `tools/setup.sh --train` installs; skipped without them)."""
import os
import shutil
import tempfile
import unittest

import synthesize


@unittest.skipUnless(shutil.which("espeak-ng") and shutil.which("sox"),
                     "espeak-ng and sox not installed (tools/setup.sh --train)")
class SynthesisIsDeterministicTest(unittest.TestCase):
    def test_same_seed_gives_identical_wav_bytes(self):
        settings = synthesize.draw_settings("test", seed=7, index=3)
        with tempfile.TemporaryDirectory() as out:
            paths = [os.path.join(out, f"{i}.wav") for i in range(2)]
            for path in paths:
                synthesize.synthesize((3, "the train leaves at quarter to eight", path, settings))
            first, second = (open(p, "rb").read() for p in paths)
            self.assertGreater(len(first), 44 + 2 * 8000, "expected at least half a second")
            self.assertEqual(first, second)


if __name__ == "__main__":
    unittest.main()
