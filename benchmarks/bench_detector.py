"""Detector accuracy on the generated audio set: a confusion table silent/quiet/noisy/normal.

Speech from espeak-ng (zh, en), noise and attenuation with numpy (seeded). Every 1 s window is
classified, at 16 kHz signed linear and at 8 kHz through G.711 µ-law (as RTP brings it).
Run: .venv/bin/python benchmarks/bench_detector.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))

from audio_cases import cases

from cti.adapters.audio.rtp_stream import pcm_to_ulaw, ulaw_to_pcm
from cti.domain.audio_classifier import AudioClassifier, ClassifierSettings

KINDS = ("silent", "quiet", "noisy", "normal")


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


if __name__ == "__main__":
    main()
