"""Rendering prompts with espeak-ng + sox: 8 kHz mono 16-bit WAV with no leading/trailing
silence, recorded files override and are trimmed the same way."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np

from cti.domain.phrases import RenderItem
from cti.platform.audio.render import (
    ACTIVE_LEVEL_DBFS,
    SILENCE_DBFS,
    active_level,
    convert_and_trim,
    espeak_args,
    masked_lead_in,
    read_band_limited,
    render_all,
)


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


def tone(rate: int, seconds: float, dbfs: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 10 ** (dbfs / 20) * np.sin(2 * np.pi * 440 * t)


def write(path: Path, samples: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(samples * 32767).astype("<i2").tobytes())


def test_trim_keeps_a_soft_onset_and_cuts_only_silence(tmp_path: Path) -> None:
    """A sound that swells from -80 to -10 dBFS over 200 ms: everything from where it is 30 dB
    below the level of the whole (the audible threshold) is kept, nothing after it is cut."""
    rate = 16000
    ramp_s = 0.2
    swell = tone(rate, ramp_s, 0.0) * 10 ** (np.linspace(-80, -10, int(ramp_s * rate)) / 20)
    silence = np.zeros(rate // 2)
    source = tmp_path / "recorded" / "soft.wav"
    write(source, np.concatenate([silence, swell, tone(rate, 0.5, -10), silence]), rate)
    target = tmp_path / "soft.wav"
    convert_and_trim(source, target)
    _, out = read(target)
    # The active level is about the steady tone's RMS (-13 dBFS; a little lower with the swell),
    # the threshold 30 dB below it on samples: the swell's peaks reach -43 dBFS 106 ms in.
    kept_swell = ramp_s - (80 - 43) / 70 * ramp_s
    assert 0.5 + kept_swell - 0.005 <= len(out) / 8000 <= 0.5 + kept_swell + 0.025
    first_20ms = out[:160] / 32768
    assert 20 * np.log10(np.abs(first_20ms).max()) >= SILENCE_DBFS  # audible in its first frame


def test_trim_keeps_the_first_syllable_of_the_silent_call_goodbye(tmp_path: Path) -> None:
    """The goodbye of row 4 starts softly. English (Sorry: a faint s at 8 kHz, ~90 ms): all of
    it is kept, nothing audible is cut. Mandarin (对): espeak-ng puts ~22 ms of faint noise
    before the burst of the d, which the burst masks; that lead-in is cut, so the file is loud
    (-30 dBFS) within 5 ms of its start and a wait ending on it is heard exactly (issue 12:
    the 4b -> 4c wait was heard 22 ms long); nothing audible before it is longer than 30 ms."""
    for lang, text in (("zh", "对不起,您的电话没有声音,请您换一部电话再次打来,好吗?再见!"),
                       ("en", "Sorry, there is no sound on your line. Goodbye!")):
        raw = tmp_path / f"{lang}.wav"
        args = espeak_args(text, lang)
        subprocess.run(["espeak-ng", *args[:-1], "-w", str(raw), args[-1]], check=True)
        x = read_band_limited(raw)
        threshold = 10 ** ((active_level(x) + SILENCE_DBFS - ACTIVE_LEVEL_DBFS) / 20)
        audible = np.flatnonzero(np.abs(x) >= threshold)
        onset = int(audible[0])
        target = tmp_path / f"{lang}-trimmed.wav"
        convert_and_trim(raw, target)
        _, y = read(target)
        y /= 32768
        first = int(np.flatnonzero(np.abs(y) >= 10 ** (SILENCE_DBFS / 20))[0])
        assert first <= 160, f"{lang}: {first / 8} ms of silence left"
        # Where the file starts in the untrimmed sound: the best match of its first 200 ms
        # (past the 2-ms fade-in) near the onset.
        b = y[16:1616]
        start = max(range(onset - 40, onset + 400),
                    key=lambda s: float(np.dot(x[s + 16:s + 1616], b)))
        assert np.corrcoef(x[start + 16:start + 1616], b)[0, 1] > 0.99  # levelled, peaks limited
        if lang == "en":
            assert start <= onset  # the onset is in the file
            assert np.abs(x[:start]).max() < threshold  # nothing audible cut before it
        else:
            cut = audible[audible < start]
            assert cut.size, f"{lang}: no lead-in cut"
            assert (cut[-1] - cut[0]) / 8000 <= 0.030, f"{lang}: cut {cut}"
            loud = int(np.flatnonzero(np.abs(y) >= 10 ** (-30 / 20))[0])
            assert loud <= 40, f"{lang}: loud {loud / 8} ms in"


def test_a_masked_lead_in_is_cut_and_a_soft_consonant_is_kept() -> None:
    """masked_lead_in: 22 ms of -46 dBFS noise before a burst 30 dB louder is cut (to EDGE_MS
    before the burst); the same before an onset only 10 dB louder, or 90 ms of it (a
    fricative), stays."""
    rng = np.random.default_rng(0)

    def noise(ms: float, dbfs: float) -> np.ndarray:
        return rng.normal(0, 10 ** (dbfs / 20), round(ms * 8))

    burst = np.concatenate([noise(20, -16), noise(200, -20)])
    cut = masked_lead_in(np.concatenate([noise(22.5, -46), burst]), ACTIVE_LEVEL_DBFS)
    assert 22.5 * 8 - 16 - 20 <= cut <= 22.5 * 8  # within a 2.5 ms frame of the burst
    weak = np.concatenate([noise(22.5, -46), noise(200, -36)])
    assert masked_lead_in(weak, ACTIVE_LEVEL_DBFS) == 0
    fricative = np.concatenate([noise(90, -44), burst])
    assert masked_lead_in(fricative, ACTIVE_LEVEL_DBFS) == 0
    assert masked_lead_in(burst, ACTIVE_LEVEL_DBFS) == 0  # loud from the start


def test_a_damaged_manifest_means_render_again_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "rendered").mkdir()
    (tmp_path / "rendered" / "manifest.json").write_bytes(b"\x89{not json")
    assert render_all([], tmp_path).files == 0
    assert (tmp_path / "rendered" / "manifest.json").read_text(encoding="utf-8") == "{}"
