"""Rendering prompts with espeak-ng + sox: 8 kHz mono 16-bit WAV with no leading/trailing
silence, recorded files override and are trimmed the same way."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from cti.domain.phrases import RenderItem
from cti.platform.audio.render import render_all


def read(path: Path) -> tuple[wave._wave_params, np.ndarray]:  # type: ignore[name-defined]
    with wave.open(str(path)) as w:
        return w.getparams(), np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)


def edge_dbfs(samples: np.ndarray) -> tuple[float, float]:
    def level(x: np.ndarray) -> float:
        return float(20 * np.log10(np.sqrt(np.mean(x * x)) / 32768 + 1e-9))

    return level(samples[:160]), level(samples[-160:])


def test_rendered_prompt_is_8khz_mono_and_trimmed(tmp_path: Path) -> None:
    items = [RenderItem("hold__zh", "zh", "请稍等"), RenderItem("hold__en", "en", "Please hold.")]
    result = render_all(items, tmp_path)
    assert (result.rendered, result.reused) == (2, 0)
    for item in items:
        params, samples = read(tmp_path / "rendered" / f"{item.file}.wav")
        assert (params.framerate, params.nchannels, params.sampwidth) == (8000, 1, 2)
        first, last = edge_dbfs(samples)
        assert first > -50, "leading silence left in the prompt"
        assert last > -50, "trailing silence left in the prompt"
    assert render_all(items, tmp_path).reused == 2  # unchanged text: not rendered again


def test_recorded_file_overrides_and_is_trimmed(tmp_path: Path) -> None:
    rate = 16000
    t = np.arange(int(0.5 * rate)) / rate
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    pad = np.zeros(rate, dtype="<i2")
    recorded = tmp_path / "recorded" / "hold__zh.wav"
    recorded.parent.mkdir()
    with wave.open(str(recorded), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.concatenate([pad, tone, pad]).tobytes())
    result = render_all([RenderItem("hold__zh", "zh", "请稍等")], tmp_path)
    assert result.recorded == 1
    params, samples = read(tmp_path / "rendered" / "hold__zh.wav")
    assert params.framerate == 8000
    assert abs(len(samples) / 8000 - 0.5) < 0.03  # 1 s of silence gone at each end


def phonemes(text: str, lang: str) -> str:
    import subprocess

    from cti.platform.audio.render import espeak_args

    out = subprocess.run(["espeak-ng", "-x", "-q", *espeak_args(text, lang)],
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_chinese_is_spoken_in_mandarin_not_as_english_pinyin() -> None:
    # espeak-ng's plain `cmn` says 您好 as "(en)nin two hao three"; Mandarin tones are 35/214/...
    said = phonemes("您好,欢迎致电客户服务热线", "zh")
    assert "(en)" not in said
    assert "n'i35n" in said  # 您 nín, rising tone


def test_latin_words_inside_chinese_are_spoken_in_english() -> None:
    said = phonemes("中文服务请按1。For English, press 2.", "zh")
    assert "'INglIS" in said  # "English" in the English voice, not read as pinyin
    assert "ts.'ong55" in said  # 中 zhōng, level tone
    after = phonemes("您好,欢迎致电ACME客户服务热线", "zh").split("'akmi", 1)[1]
    assert "(en)" not in after  # back in Mandarin after the English run
    assert "51" in after


def test_a_damaged_manifest_means_render_again_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "rendered").mkdir()
    (tmp_path / "rendered" / "manifest.json").write_bytes(b"\x89{not json")
    assert render_all([], tmp_path).files == 0
    assert (tmp_path / "rendered" / "manifest.json").read_text(encoding="utf-8") == "{}"
