"""Detector accuracy on the generated audio set: a confusion table silent/quiet/noisy/normal.

Speech from espeak-ng (zh, en), noise and attenuation with numpy (seeded). Every 1 s window is
classified, at 16 kHz signed linear and at 8 kHz through G.711 µ-law (as RTP brings it). A last
table runs the e2e callers' line audio (tests/e2e/media.py: the captures sipp plays in the e2e
tests, including a silent caller on a line with faint hiss, which must count as silent).
Run: .venv/bin/python benchmarks/bench_detector.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "unit"))
sys.path.insert(0, str(ROOT))

from audio_cases import cases  # noqa: E402

from cti.domain.audio_classifier import AudioClassifier, ClassifierSettings  # noqa: E402
from cti.platform.audio.g711 import pcm_to_ulaw, ulaw_to_pcm  # noqa: E402

KINDS = ("silent", "quiet", "noisy", "normal")
# tests/e2e/media.py's line conditions and what the detector must call them.
E2E_TRUTH = {"silence": "silent", "hiss": "silent", "speech": "normal", "speech-quiet": "quiet",
             "speech-noisy": "noisy", "noise": "noisy"}


def table(title: str, matrix: Counter[tuple[str, str]]) -> None:
    print(f"\n{title}  (rows: truth, columns: detected; 1 s windows)")
    print(f"{'':>8}" + "".join(f"{k:>8}" for k in KINDS) + f"{'acc':>8}")
    for truth in KINDS:
        row = [matrix[(truth, k)] for k in KINDS]
        total = sum(row)
        acc = f"{100 * matrix[(truth, truth)] / total:.1f}%" if total else "-"
        print(f"{truth:>8}" + "".join(f"{n:>8}" for n in row) + f"{acc:>8}")
    total = sum(matrix.values())
    right = sum(matrix[(k, k)] for k in KINDS)
    print(f"overall {right}/{total} = {100 * right / total:.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    settings = ClassifierSettings()
    for label, rate, through_ulaw in (("16 kHz slin", 16000, False), ("8 kHz µ-law", 8000, True)):
        matrix: Counter[tuple[str, str]] = Counter()
        frames = 0
        elapsed = 0.0
        for seed in range(args.seeds):
            for _name, (truth, pcm) in cases(rate, seed=seed * 101).items():
                audio = ulaw_to_pcm(pcm_to_ulaw(pcm)) if through_ulaw else pcm
                start = time.perf_counter()
                windows = AudioClassifier(settings, rate, 1000).feed(audio)
                elapsed += time.perf_counter() - start
                frames += len(audio) // (rate // 50 * 2)
                for w in windows:
                    matrix[(truth, w.kind)] += 1
        table(label, matrix)
        print(f"cost: {1e6 * elapsed / frames:.1f} µs per 20 ms frame "
              f"({frames / 50 / elapsed:.0f}x real time on one core)")
    e2e_table(settings)


def e2e_table(settings: ClassifierSettings) -> None:
    from tests.e2e import media

    matrix: Counter[tuple[str, str]] = Counter()
    for name, samples in media.standard_signals(seconds=30.0).items():
        # the caller's G.711 µ-law as sipp sends it, decoded as the PBX does
        pcm = media.ulaw_to_linear(media.linear_to_ulaw(samples)).astype("<i2").tobytes()
        for w in AudioClassifier(settings, media.SAMPLE_RATE, 1000).feed(pcm):
            matrix[(E2E_TRUTH[name], w.kind)] += 1
    table("e2e line audio, 8 kHz µ-law (silence+hiss / quiet / noisy+noise / speech)", matrix)


if __name__ == "__main__":
    main()
