"""How examples/call.flac was made (espeak-ng, a held-out voice, so the shipped model never heard it):

    python examples/make_example.py

44.1 kHz stereo with light noise, so the demo also exercises resampling and downmixing.
"""

from pathlib import Path

import numpy as np
import soundfile as sf

from qasr.runtime.audio import resample
from testmodel.train.corpus import SAMPLE_RATE, degrade, speak

TEXT = "please call me at seven thirty tomorrow morning"
VOICE, VARIANT = "en-us", "m5"  # m5: one of testmodel.train.corpus.HELD_OUT_VARIANTS

if __name__ == "__main__":
    mono = degrade(speak(TEXT, VOICE, VARIANT, rate=160, pitch=50), snr_db=25.0, reverb=False,
                   rng=np.random.default_rng(0))
    wide = resample(mono, SAMPLE_RATE, 44100)
    stereo = np.stack([wide, 0.8 * wide], axis=1)
    out = Path(__file__).with_name("call.flac")
    sf.write(out, stereo, 44100, format="FLAC")
    out.with_suffix(".txt").write_text(TEXT + "\n")
    print(f"wrote {out} ({len(wide) / 44100:.1f} s, 44.1 kHz stereo): {TEXT!r}")
