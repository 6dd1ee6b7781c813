"""Speech-like expression trajectories and small head motion for synthetic talking heads.

Everything is built from smooth pieces sampled at the frame times, so trajectories are smooth
and bounded by construction:

* **Phrases and pauses.** Speech alternates phrases (1.2-3.5 s) and pauses (0.3-1.0 s).
* **Syllables.** Inside a phrase, syllables follow at 3.5-5.5 Hz (jittered). Each syllable is a
  raised-cosine pulse of the jaw, and a viseme picks the lip shape pulsed with it: open "a",
  spread "e/i" (``mouth_stretch``), rounded "o" (``mouth_funnel``), "u" (``mouth_pucker``),
  "f/v" (``upper_lip_up``) or a closed "m/b/p". Pulses add up and pass a smooth saturation, so
  every coefficient stays in [0, 1].
* **Slow expressions.** Smiles, frowns and brow movements are longer plateaus (0.6-4 s); brows
  rise more often at phrase starts. Every slow channel has at least one event per clip.
* **Blinks** every 2-5 s, 0.2-0.3 s long, fully closing the eyes.
* **Head motion**: yaw/pitch/roll and translation are sums of a few slow sinusoids
  (0.05-0.6 Hz) scaled to fixed amplitudes, plus small nods at phrase starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facenerf.data.synthetic.blendshapes import BLENDSHAPES

_K = {name: i for i, name in enumerate(BLENDSHAPES)}

# viseme -> (probability, jaw range, {blendshape: range})
VISEMES = {
    "a": (0.30, (0.65, 1.0), {}),
    "e": (0.22, (0.30, 0.55), {"mouth_stretch": (0.5, 0.9)}),
    "o": (0.15, (0.40, 0.65), {"mouth_funnel": (0.5, 0.9)}),
    "u": (0.13, (0.12, 0.30), {"mouth_pucker": (0.6, 1.0)}),
    "f": (0.10, (0.10, 0.25), {"upper_lip_up": (0.5, 0.9)}),
    "m": (0.10, (0.00, 0.08), {}),
}


@dataclass(frozen=True)
class SpeechSettings:
    """Timing and amplitude of the generated talking (seconds, Hz, degrees, millimetres)."""

    fps: float = 25.0
    syllable_rate: tuple[float, float] = (3.5, 5.5)
    phrase_seconds: tuple[float, float] = (1.2, 3.5)
    pause_seconds: tuple[float, float] = (0.3, 1.0)
    blink_interval: tuple[float, float] = (2.0, 5.0)
    blink_seconds: tuple[float, float] = (0.2, 0.3)
    yaw_deg: float = 8.0
    pitch_deg: float = 5.0
    roll_deg: float = 3.0
    translation_mm: tuple[float, float, float] = (6.0, 4.0, 8.0)


def bump(t: np.ndarray, start: float, duration: float) -> np.ndarray:
    """Raised-cosine pulse: 0 outside ``[start, start + duration]``, 1 at its middle."""
    phase = np.clip((t - start) / max(duration, 1e-6), 0.0, 1.0)
    return np.sin(np.pi * phase) ** 2


def plateau(t: np.ndarray, start: float, duration: float, ramp: float) -> np.ndarray:
    """1 over ``[start + ramp, start + duration - ramp]`` with raised-cosine ramps, else 0."""
    ramp = min(ramp, 0.5 * duration)
    up = np.clip((t - start) / ramp, 0.0, 1.0)
    down = np.clip((start + duration - t) / ramp, 0.0, 1.0)
    return np.sin(0.5 * np.pi * np.minimum(up, down)) ** 2


def saturate(x: np.ndarray, power: float = 6.0) -> np.ndarray:
    """Smooth map of ``x >= 0`` into [0, 1): about ``x`` below 0.7, never above 1."""
    x = np.maximum(x, 0.0)
    return x / (1.0 + x ** power) ** (1.0 / power)


def phrases(duration: float, rng: np.random.Generator, s: SpeechSettings) -> list[tuple[float, float]]:
    """``[(start, end)]`` seconds of speech, separated by pauses; the clip starts with a pause."""
    out, t = [], rng.uniform(0.15, 0.4)
    while t < duration:
        length = rng.uniform(*s.phrase_seconds)
        out.append((t, min(t + length, duration)))
        t += length + rng.uniform(*s.pause_seconds)
    return out


def syllables(spans: list[tuple[float, float]], rng: np.random.Generator,
              s: SpeechSettings) -> list[tuple[float, float, str, float]]:
    """``[(start, duration, viseme, jaw)]`` for every syllable of every phrase."""
    names = list(VISEMES)
    probs = np.array([VISEMES[n][0] for n in names])
    out = []
    for start, end in spans:
        rate = rng.uniform(*s.syllable_rate)
        t = start
        while True:
            period = rng.uniform(0.8, 1.2) / rate
            if t + 1.4 * period > end:   # every pulse ends inside its phrase
                break
            viseme = names[rng.choice(len(names), p=probs / probs.sum())]
            out.append((t, 1.4 * period, viseme, rng.uniform(*VISEMES[viseme][1])))
            t += period
    return out


def _events(t: np.ndarray, rng: np.random.Generator, count: int, seconds: tuple[float, float],
            amplitude: tuple[float, float]) -> np.ndarray:
    """``count`` plateaus at random times (at least one), as one channel ``[N]``."""
    duration = float(t[-1]) if len(t) > 1 else 1.0
    out = np.zeros_like(t)
    for _ in range(max(1, count)):
        length = min(rng.uniform(*seconds), 0.9 * duration)
        start = rng.uniform(0.0, max(duration - length, 1e-6))
        out += rng.uniform(*amplitude) * plateau(t, start, length, 0.3 * length)
    return out


def expression_track(n_frames: int, rng: np.random.Generator,
                     s: SpeechSettings = SpeechSettings()) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Per-frame blendshape coefficients ``[N, K]`` in [0, 1] and the phrase spans (seconds)."""
    t = np.arange(n_frames) / s.fps
    duration = n_frames / s.fps
    raw = np.zeros((n_frames, len(BLENDSHAPES)))
    spans = phrases(duration, rng, s)
    for start, length, viseme, jaw in syllables(spans, rng, s):
        raw[:, _K["jaw_open"]] += jaw * bump(t, start, length)
        for name, (lo, hi) in VISEMES[viseme][2].items():
            raw[:, _K[name]] += rng.uniform(lo, hi) * bump(t, start - 0.1 * length, 1.3 * length)
    minutes = duration / 60.0
    raw[:, _K["mouth_smile"]] += _events(t, rng, round(7 * minutes), (1.5, 4.0), (0.35, 0.8))
    raw[:, _K["mouth_frown"]] += _events(t, rng, round(3 * minutes), (1.0, 2.5), (0.3, 0.7))
    raw[:, _K["brow_down"]] += _events(t, rng, round(3 * minutes), (0.8, 2.0), (0.3, 0.7))
    raw[:, _K["brow_up"]] += _events(t, rng, round(4 * minutes), (0.6, 1.5), (0.4, 0.9))
    for start, _ in spans:
        if rng.random() < 0.4:
            raw[:, _K["brow_up"]] += rng.uniform(0.3, 0.7) * plateau(t, start - 0.1, rng.uniform(0.6, 1.2), 0.2)
    blink = rng.uniform(0.3, 2.0)
    while blink < duration:
        length = rng.uniform(*s.blink_seconds)
        raw[:, _K["eye_blink"]] += 1.15 * bump(t, blink, length)
        blink += length + rng.uniform(*s.blink_interval)
    return saturate(raw), spans


def smooth_noise(n_frames: int, fps: float, rng: np.random.Generator, amplitude: float,
                 max_hz: float = 0.6, terms: int = 4) -> np.ndarray:
    """Band-limited noise ``[N]``: ``terms`` sinusoids of 0.05-``max_hz`` Hz, peak ``amplitude``."""
    t = np.arange(n_frames) / fps
    freqs = rng.uniform(0.05, max_hz, terms)
    signal = sum(rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs)
    peak = np.abs(signal).max() if n_frames else 1.0
    return amplitude * signal / max(peak, 1e-9)


def head_motion(n_frames: int, rng: np.random.Generator, spans: list[tuple[float, float]],
                s: SpeechSettings = SpeechSettings()) -> tuple[np.ndarray, np.ndarray]:
    """``(euler [N, 3] degrees (pitch, yaw, roll), translation [N, 3] mm)`` of the head.

    Angles stay within ``(pitch_deg, yaw_deg, roll_deg)`` and translations within
    ``translation_mm`` per axis.
    """
    t = np.arange(n_frames) / s.fps
    nods = sum((bump(t, start, 0.5) for start, _ in spans if rng.random() < 0.5), np.zeros(n_frames))
    pitch = smooth_noise(n_frames, s.fps, rng, 0.7 * s.pitch_deg) + 0.3 * s.pitch_deg * np.minimum(nods, 1.0)
    yaw = smooth_noise(n_frames, s.fps, rng, s.yaw_deg)
    roll = smooth_noise(n_frames, s.fps, rng, s.roll_deg)
    shift = np.stack([smooth_noise(n_frames, s.fps, rng, a, max_hz=0.4) for a in s.translation_mm], 1)
    return np.stack([pitch, yaw, roll], 1), shift
