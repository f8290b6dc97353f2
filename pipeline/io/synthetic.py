"""Reader ``synthetic``: a generator of realistic multi-subject EMG or EEG cohorts.

The source is not a file: ``discover("demo")`` (a small default cohort), or the path of a
YAML file holding the generator options, or any name plus keyword options. Each recording is
a virtual :class:`SourceFile` whose ``extra["params"]`` holds every generator parameter, so
``read`` is a pure function of it and :meth:`SyntheticReader.fingerprint` hashes it.

Determinism and memory
----------------------
Every random stream is seeded from ``(seed, stream, subject, run[, segment])`` with
:class:`numpy.random.SeedSequence`: recordings generate independently (in parallel, in any
order), and the signal is produced in fixed segments of ``SEGMENT`` samples whose filters
carry their state across segment boundaries. ``blocks()`` re-chunks that segment stream, so
the values do not depend on ``block_samples`` and memory stays bounded at any duration.

EMG model
---------
8 (``n_channels``) electrodes on a ring around the forearm. Each gesture class has a spatial
activation pattern over the ring (two von Mises bumps: agonist and antagonist muscles),
shared by the cohort; each subject perturbs it (bump positions, amplitudes), rotates it by
an electrode shift (a subject-specific fraction of a channel, plus a small per-run donning
shift) and weights channels with subject-specific gains. A recording alternates pauses
(class 0, "unmarked") and gestures held ~``gesture_duration`` s (classes 1..n_classes, the
first of which is "rest", i.e. a relaxed hand), each in random order per cycle, with
per-trial intensity, smooth onset/offset ramps and slow fluctuations. The signal is
band-limited Gaussian noise (20-450 Hz Butterworth, cross-talk between neighbouring
electrodes) modulated by the activation envelope, plus white baseline noise and weak 50 Hz
hum; units V, per-sample labels.

EEG model
---------
10-20 channels. Per channel 1/f (pink) background, volume-conducted between neighbouring
electrodes; posterior alpha around a subject-specific individual alpha frequency, fronto-
central beta and frontal-midline theta, each band-limited noise with slow amplitude
fluctuations. The class changes band power: class 0 "rest" has full alpha; "task" classes
suppress alpha and raise beta and theta. Subjects differ in band powers and channel gains,
so a cross-subject classifier is well above chance but far from perfect. Labels are per
recording (``label_mode="recording"``: class = (run - 1) mod n_classes, i.e. run 1 rest, run 2
task...) or per sample (``label_mode="sample"``: alternating blocks of ``trial_duration``
s). Modelled in microvolts, stored in volts (the store's convention, :mod:`pipeline.io._units`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pipeline._fs import sha256_json
from pipeline.exceptions import InputError, SpecError
from pipeline.io._options import check_options
from pipeline.io.base import RecordingSource, SourceFile, register_reader

__all__ = ["DEMO", "SEGMENT", "SyntheticReader", "generate_segments", "resolve_params"]

logger = logging.getLogger(__name__)

SEGMENT = 1 << 15
BLOCK_SAMPLES = 1 << 18
# Seed-sequence stream tags: cohort patterns, subject, recording schedule, segment noise.
_POPULATION, _SUBJECT, _RECORDING, _NOISE = 0, 1, 2, 3

DEFAULTS: dict[str, Any] = {
    "n_subjects": 10,
    "n_runs": 2,
    "duration": 60.0,
    "modality": "emg",
    "sampling_rate": None,
    "n_channels": None,
    "n_classes": None,
    "seed": 0,
    "label_mode": None,
    "gesture_duration": 3.0,
    "rest_duration": 3.0,
    "trial_duration": 20.0,
}
DEMO: dict[str, Any] = {
    "n_subjects": 6,
    "n_runs": 2,
    "duration": 60.0,
    "modality": "emg",  # 8 channels at 1 kHz by default; modality="eeg" gives 16 at 250 Hz
}
# Cohort-level keys: they do not change a recording, so they stay out of its fingerprint
# (growing a cohort from 6 to 60 subjects re-ingests nothing already there).
COHORT_KEYS = ("n_subjects", "n_runs", "name")
GESTURES = [
    "rest",
    "fist",
    "wrist_flexion",
    "wrist_extension",
    "radial_deviation",
    "ulnar_deviation",
    "extended_palm",
]
EEG_CHANNELS = {  # name: (x left-right, y back-front), unit head radius
    "Fp1": (-0.3, 0.95),
    "Fp2": (0.3, 0.95),
    "F7": (-0.8, 0.6),
    "F3": (-0.4, 0.5),
    "F4": (0.4, 0.5),
    "F8": (0.8, 0.6),
    "T3": (-1.0, 0.0),
    "C3": (-0.5, 0.0),
    "C4": (0.5, 0.0),
    "T4": (1.0, 0.0),
    "T5": (-0.8, -0.6),
    "P3": (-0.4, -0.5),
    "P4": (0.4, -0.5),
    "T6": (0.8, -0.6),
    "O1": (-0.3, -0.95),
    "O2": (0.3, -0.95),
    "Fz": (0.0, 0.5),
    "Cz": (0.0, 0.0),
    "Pz": (0.0, -0.5),
}
# Which electrodes a montage of n < 19 channels keeps: symmetric pairs spread over the head
# first (8 channels: O1 O2 C3 C4 F3 F4 P3 P4), the midline last.
EEG_PRIORITY = [
    *("O1", "O2", "C3", "C4", "F3", "F4", "P3", "P4", "Fp1", "Fp2"),
    *("T3", "T4", "T5", "T6", "F7", "F8", "Fz", "Cz", "Pz"),
]
# 3-zero/3-pole approximation of a 1/f spectrum (error < 0.3 dB above fs/1000).
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{path}: cannot read the synthetic cohort YAML: {exc}"
        raise InputError(msg, path=str(path)) from exc
    if not isinstance(data, dict):
        msg = f"{path}: expected a mapping of generator options, found {type(data).__name__}"
        raise InputError(msg, path=str(path))
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        msg = f"{path}: unknown key(s) {unknown!r}; accepted keys: {', '.join(sorted(DEFAULTS))}"
        raise SpecError(msg)
    return data


def class_names(modality: str, n_classes: int) -> dict[int, str]:
    """Return the class code -> name mapping of a synthetic cohort."""
    if modality == "emg":
        names = {0: "unmarked"}
        for k in range(1, n_classes + 1):
            names[k] = GESTURES[k - 1] if k <= len(GESTURES) else f"gesture{k}"
        return names
    names = {0: "rest"}
    for k in range(1, n_classes):
        names[k] = "task" if n_classes == 2 else f"task{k}"
    return names


def resolve_params(source: str | Path, options: dict[str, Any]) -> dict[str, Any]:
    """Return the full, validated generator parameters for ``source`` and ``options``.

    ``source`` is ``"demo"`` (the demo cohort, overridable by options), a YAML file of
    options, or any other name (defaults plus options). Explicit options win.

    Raises
    ------
    SpecError
        If a value is out of range, naming the option, the allowed values and what was given.
    """
    text = str(source)
    params = dict(DEFAULTS)
    if text == "demo":
        params.update(DEMO)
        name = "demo"
    elif text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            msg = f"{path}: synthetic cohort YAML not found"
            raise InputError(msg, path=str(path))
        params.update(_load_yaml(path))
        name = path.stem
    else:
        name = Path(text).name or "synthetic"
    params.update({k: v for k, v in options.items() if k in DEFAULTS})
    p = params

    def fail(key: str, expected: str) -> None:
        msg = f"synthetic option {key!r}: expected {expected}, found {p[key]!r}"
        raise SpecError(msg)

    if p["modality"] not in ("emg", "eeg"):
        fail("modality", "'emg' or 'eeg'")
    emg = p["modality"] == "emg"
    p["sampling_rate"] = float(p["sampling_rate"] or (1000.0 if emg else 250.0))
    p["n_channels"] = int(p["n_channels"] or (8 if emg else 16))
    p["n_classes"] = int(p["n_classes"] or (6 if emg else 2))
    p["label_mode"] = p["label_mode"] or ("sample" if emg else "recording")
    for key in ("n_subjects", "n_runs", "n_channels"):
        if not isinstance(p[key], int | np.integer) or p[key] < 1:
            fail(key, "an integer >= 1")
        p[key] = int(p[key])
    if not isinstance(p["seed"], int | np.integer) or p["seed"] < 0:
        fail("seed", "an integer >= 0")
    p["seed"] = int(p["seed"])
    for key in ("duration", "gesture_duration", "rest_duration", "trial_duration"):
        if not isinstance(p[key], int | float) or not p[key] > 0:
            fail(key, "a positive number of seconds")
        p[key] = float(p[key])
    if emg and p["sampling_rate"] < 200:
        fail("sampling_rate", "at least 200 Hz for EMG (20-450 Hz band)")
    if not emg and p["sampling_rate"] < 64:
        fail("sampling_rate", "at least 64 Hz for EEG (beta band up to 25 Hz)")
    if p["n_classes"] < (1 if emg else 2):
        fail("n_classes", ">= 1 gesture class" if emg else ">= 2 classes (rest and task)")
    if p["label_mode"] not in ("sample", "recording") or (emg and p["label_mode"] != "sample"):
        fail("label_mode", "'sample' (EMG, EEG) or 'recording' (EEG)")
    p["name"] = name
    return p


# ----------------------------------------------------------------------------- EMG model


def _mix(matrix: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return ``matrix @ x`` without BLAS: its threads only contend inside Dask workers."""
    return np.einsum("ij,jm->im", matrix, x)


def _von_mises(phi: np.ndarray, mu: float, kappa: float) -> np.ndarray:
    return np.exp(kappa * (np.cos(phi - mu) - 1.0))


@lru_cache(maxsize=64)
def _bandpass(fs: float, low: float, high: float, order: int) -> tuple[np.ndarray, float]:
    """Return (sos, 1/std of white noise through it) for a Butterworth band-pass."""
    # imported to generate: discovery and fingerprints need none of scipy.signal
    from scipy import signal as sps

    high = min(high, 0.45 * fs)
    sos = sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    impulse = np.zeros(int(20 * fs / low))
    impulse[0] = 1.0
    h = sps.sosfilt(sos, impulse)
    return sos, 1.0 / float(np.sqrt(np.sum(h**2)))


def _emg_activation(p: dict[str, Any], subject: int, run: int) -> np.ndarray:
    """Return the (n_classes + 1, n_channels) activation matrix of one recording."""
    k, c = p["n_classes"], p["n_channels"]
    pop = _rng(p["seed"], _POPULATION)
    mu1 = 2 * np.pi * np.arange(k) / k + pop.normal(0, 0.3, k)
    mu2 = mu1 + np.pi + pop.normal(0, 0.6, k)
    a2 = pop.uniform(0.3, 0.8, k)
    kappa = pop.uniform(1.0, 2.5, k)
    amp = pop.uniform(0.6, 1.0, k)
    subj = _rng(p["seed"], _SUBJECT, subject)
    shift = subj.uniform(-0.5, 0.5)
    gains = subj.lognormal(0.0, 0.3, c)
    scale = subj.lognormal(0.0, 0.3)
    mu1 = mu1 + subj.normal(0, 0.35, k)
    mu2 = mu2 + subj.normal(0, 0.5, k)
    amp = amp * subj.lognormal(0.0, 0.25, k)
    rec = _rng(p["seed"], _RECORDING, subject, run, 0)
    shift += rec.normal(0, 0.15)
    gains = gains * rec.lognormal(0.0, 0.1, c)
    phi = 2 * np.pi * (np.arange(c) + shift) / c
    act = np.empty((k + 1, c))
    act[0] = 0.03
    for j in range(k):
        if j == 0 and k > 1:  # "rest": relaxed hand, low diffuse tone
            act[1] = 0.08
            continue
        act[j + 1] = amp[j] * (
            _von_mises(phi, mu1[j], kappa[j]) + a2[j] * _von_mises(phi, mu2[j], kappa[j])
        )
    return act * gains * scale


def _emg_schedule(p: dict[str, Any], subject: int, run: int, n: int) -> dict[str, np.ndarray]:
    """Return the gesture trials of one recording: start, end (samples), class, intensity."""
    fs, k = p["sampling_rate"], p["n_classes"]
    rng = _rng(p["seed"], _RECORDING, subject, run, 1)
    t = rng.uniform(1.0, 2.0) * fs
    starts, ends, classes = [], [], []
    order: list[int] = []
    while True:
        hold = p["gesture_duration"] * rng.uniform(0.85, 1.15) * fs
        if t + hold > n:
            break
        if not order:
            order = list(rng.permutation(k) + 1)
        starts.append(int(t))
        ends.append(int(t + hold))
        classes.append(order.pop())
        t += hold + p["rest_duration"] * rng.uniform(0.85, 1.15) * fs
    m = len(starts)
    return {
        "start": np.asarray(starts, dtype=np.int64),
        "end": np.asarray(ends, dtype=np.int64),
        "cls": np.asarray(classes, dtype=np.int64),
        "intensity": rng.uniform(0.6, 1.3, m),
        "wobble_f": rng.uniform(0.2, 1.0, m),
        "wobble_ph": rng.uniform(0, 2 * np.pi, m),
    }


def _labels_from_schedule(sched: dict[str, np.ndarray], n: int) -> np.ndarray:
    labels = np.zeros(n, dtype=np.int16)
    for s, e, c in zip(sched["start"], sched["end"], sched["cls"], strict=True):
        labels[s:e] = c
    return labels


def _emg_segments(p: dict[str, Any], subject: int, run: int, n: int) -> Iterator[np.ndarray]:
    from scipy import signal as sps  # as in _bandpass

    # Channels-first (c, m) arrays: filters and mixing run on contiguous rows.
    fs, c = p["sampling_rate"], p["n_channels"]
    act_t = _emg_activation(p, subject, run).T
    sched = _emg_schedule(p, subject, run, n)
    sos, norm = _bandpass(fs, 20.0, 450.0, 4)
    crosstalk = np.eye(c)
    if c > 2:
        idx = np.arange(c)
        crosstalk[idx, (idx + 1) % c] = crosstalk[idx, (idx - 1) % c] = 0.25
    crosstalk /= np.sqrt((crosstalk**2).sum(axis=1, keepdims=True))
    subj = _rng(p["seed"], _SUBJECT, subject, 1)
    baseline = subj.uniform(1.0, 3.0) * 1e-6
    hum_amp = subj.uniform(0.2, 1.0, c) * 1e-6
    hum_ph = subj.uniform(0, 2 * np.pi, c)
    hum_sin, hum_cos = (hum_amp * np.cos(hum_ph))[:, None], (hum_amp * np.sin(hum_ph))[:, None]
    ramp = max(1, int(0.15 * fs))
    zi = np.zeros((sos.shape[0], c, 2))
    for seg, a in enumerate(range(0, n, SEGMENT)):
        m = min(SEGMENT, n - a)
        t = np.arange(a, a + m)
        if len(sched["start"]):
            j = np.maximum(np.searchsorted(sched["start"], t, side="right") - 1, 0)
            inside = (t >= sched["start"][j]) & (t < sched["end"][j])
            shape = np.clip(np.minimum(t - sched["start"][j], sched["end"][j] - t) / ramp, 0, 1)
            shape = 0.5 - 0.5 * np.cos(np.pi * shape)
            phase = 2 * np.pi * sched["wobble_f"][j] * t / fs + sched["wobble_ph"][j]
            env = np.where(inside, sched["intensity"][j] * shape * (1 + 0.15 * np.sin(phase)), 0.0)
            cls = np.where(inside, sched["cls"][j], 0)
        else:
            env, cls = np.zeros(m), np.zeros(m, dtype=np.int64)
        level = act_t[:, cls] * env + act_t[:, :1]
        rng = _rng(p["seed"], _NOISE, subject, run, seg)
        white = _mix(crosstalk, rng.standard_normal((c, m)))
        band, zi = sps.sosfilt(sos, white, axis=-1, zi=zi)
        x = (50e-6 * norm) * level * band
        x += baseline * rng.standard_normal((c, m))
        w = 2 * np.pi * 50.0 * t / fs
        x += hum_sin * np.sin(w) + hum_cos * np.cos(w)
        yield np.ascontiguousarray(x.T, dtype=np.float32)


# ----------------------------------------------------------------------------- EEG model


def _eeg_montage(p: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    chosen = set(EEG_PRIORITY[: p["n_channels"]])
    names = [n for n in EEG_CHANNELS if n in chosen]  # in the usual 10-20 order
    pos = [EEG_CHANNELS[n] for n in names]
    extra = p["n_channels"] - len(names)
    if extra > 0:
        ang = 2 * np.pi * np.arange(extra) / extra
        rad = 0.3 + 0.6 * (np.arange(extra) % 3) / 2
        names += [f"E{i}" for i in range(len(names) + 1, p["n_channels"] + 1)]
        pos += list(zip(rad * np.cos(ang), rad * np.sin(ang), strict=True))
    return names, np.asarray(pos, dtype=np.float64)


def _eeg_class_per_sample(p: dict[str, Any], subject: int, run: int, a: int, m: int) -> np.ndarray:
    if p["label_mode"] == "recording":
        return np.full(m, (run - 1) % p["n_classes"], dtype=np.int64)
    trial = max(1, int(p["trial_duration"] * p["sampling_rate"]))
    offset = _rng(p["seed"], _RECORDING, subject, run, 1).integers(0, p["n_classes"])
    return ((np.arange(a, a + m) // trial + offset) % p["n_classes"]).astype(np.int64)


def _eeg_segments(p: dict[str, Any], subject: int, run: int, n: int) -> Iterator[np.ndarray]:
    from scipy import signal as sps  # as in _bandpass

    # Channels-first (c, m) arrays: filters and mixing run on contiguous rows.
    fs, c, k = p["sampling_rate"], p["n_channels"], p["n_classes"]
    _, pos = _eeg_montage(p)
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
    mixing = np.exp(-d2 / 0.15)
    mixing /= np.sqrt((mixing**2).sum(axis=1, keepdims=True))
    subj = _rng(p["seed"], _SUBJECT, subject)
    iaf = subj.uniform(8.5, 11.5)
    gains = subj.lognormal(0.0, 0.2, c)[:, None]
    band_gain = subj.lognormal(0.0, 0.45, 3)  # alpha, beta, theta
    pink_amp = subj.uniform(8.0, 14.0)
    rec = _rng(p["seed"], _RECORDING, subject, run, 0)
    band_gain = band_gain * rec.lognormal(0.0, 0.15, 3)
    # Class effect on (alpha, beta, theta) amplitude: rest 1; tasks suppress alpha.
    effect = np.ones((k, 3))
    for j in range(1, k):
        effect[j] = [0.65 - 0.08 * (j - 1), 1.3 + 0.1 * (j - 1), 1.2]
    y, x = pos[:, 1], pos[:, 0]
    topo = np.stack(
        [
            np.exp(-((y + 0.9) ** 2) / 0.5),  # posterior alpha
            np.exp(-((y - 0.2) ** 2 + x**2) / 0.6),  # fronto-central beta
            np.exp(-((y - 0.5) ** 2 + x**2) / 0.3),  # frontal midline theta
        ]
    )
    amps = (np.array([12.0, 3.0, 4.0])[:, None] * topo * band_gain[:, None])[:, :, None]
    bands = [(iaf - 1.5, iaf + 1.5), (15.0, 25.0), (4.5, 7.0)]
    filters = [_bandpass(fs, lo, hi, 2) for lo, hi in bands]
    mod_f = rec.uniform(0.05, 0.3, (3, 2))
    mod_ph = rec.uniform(0, 2 * np.pi, (3, 2))
    zi_pink = np.zeros((c, 3))
    zis = [np.zeros((sos.shape[0], c, 2)) for sos, _ in filters]
    pink_norm = 1.0 / np.sqrt(np.sum(sps.lfilter(_PINK_B, _PINK_A, np.eye(1, 4096)[0]) ** 2))
    for seg, a in enumerate(range(0, n, SEGMENT)):
        m = min(SEGMENT, n - a)
        t = np.arange(a, a + m) / fs
        cls = _eeg_class_per_sample(p, subject, run, a, m)
        rng = _rng(p["seed"], _NOISE, subject, run, seg)
        white = rng.standard_normal((c, m))
        pink, zi_pink = sps.lfilter(_PINK_B, _PINK_A, white, axis=-1, zi=zi_pink)
        # Sources at the electrode sites, then one volume-conduction mixing of their sum.
        sources = (pink_amp * pink_norm) * pink
        for b, (sos, norm) in enumerate(filters):
            osc, zis[b] = sps.sosfilt(sos, rng.standard_normal((c, m)), axis=-1, zi=zis[b])
            slow = 1 + 0.4 * np.sin(2 * np.pi * mod_f[b, 0] * t + mod_ph[b, 0]) * np.sin(
                2 * np.pi * mod_f[b, 1] * t + mod_ph[b, 1]
            )
            sources += (norm * osc) * amps[b] * (effect[cls, b] * slow)
        out = _mix(mixing, sources)
        out *= gains
        out += 0.5 * rng.standard_normal((c, m))
        # The model is written in microvolts; the store's unit is the volt (io._units).
        yield np.ascontiguousarray(out.T * 1e-6, dtype=np.float32)


# ----------------------------------------------------------------------------- reader


def generate_segments(p: dict[str, Any], subject: int, run: int) -> Iterator[np.ndarray]:
    """Yield the signal of one recording as float32 segments of ``SEGMENT`` rows.

    Parameters
    ----------
    p : dict
        Parameters from :func:`resolve_params`.
    subject, run : int
        1-based subject and run numbers.

    Yields
    ------
    ndarray of shape (<= SEGMENT, n_channels), float32
    """
    n = round(p["duration"] * p["sampling_rate"])
    gen = _emg_segments if p["modality"] == "emg" else _eeg_segments
    yield from gen(p, subject, run, n)


def _rechunk(segments: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    buffer: list[np.ndarray] = []
    held = 0
    for seg in segments:
        buffer.append(seg)
        held += seg.shape[0]
        while held >= size:
            joined = np.concatenate(buffer) if len(buffer) > 1 else buffer[0]
            yield joined[:size]
            rest = joined[size:]
            buffer, held = ([rest] if rest.shape[0] else []), rest.shape[0]
    if held:
        yield np.concatenate(buffer) if len(buffer) > 1 else buffer[0]


@register_reader("synthetic")
class SyntheticReader:
    """Generate synthetic EMG/EEG cohorts (see the module docstring for the models).

    Options (``discover``): ``n_subjects``, ``n_runs``, ``duration`` (s), ``modality``
    (``"emg"``/``"eeg"``), ``sampling_rate`` (default 1000 EMG, 250 EEG), ``n_channels``
    (8 EMG, 16 EEG), ``n_classes`` (6 gestures EMG, 2 EEG), ``seed``, ``label_mode``
    (EEG: ``"recording"`` or ``"sample"``), ``gesture_duration``, ``rest_duration``,
    ``trial_duration``. ``read`` accepts ``block_samples`` (default 2**18) and ignores the
    generator options, which it takes from the SourceFile.
    """

    name = "synthetic"
    version = "1.1"  # 1.1: EEG in volts (1.0 stored microvolts); in every fingerprint

    def discover(self, source: Path | str, **options: Any) -> list[SourceFile]:
        """Return one virtual SourceFile per (subject, run) of the cohort.

        Returns
        -------
        list of SourceFile
            ``path`` is ``synthetic:<name>/<recording id>``; ``extra["params"]`` holds the
            resolved generator parameters with ``subject_index`` and ``run_index``.
        """
        check_options(self.name, options)
        p = resolve_params(source, options)
        width = max(2, len(str(p["n_subjects"])))
        files = []
        names = class_names(p["modality"], p["n_classes"])
        for s in range(1, p["n_subjects"] + 1):
            for r in range(1, p["n_runs"] + 1):
                params = {k: v for k, v in p.items() if k not in COHORT_KEYS}
                params.update(subject_index=s, run_index=r)
                label = None
                if p["modality"] == "eeg" and p["label_mode"] == "recording":
                    label = names[(r - 1) % p["n_classes"]]
                subject = f"{s:0{width}d}"
                files.append(
                    SourceFile(
                        path=Path(f"synthetic:{p['name']}") / f"sub-{subject}_run-{r}",
                        subject=subject,
                        session=None,
                        run=str(r),
                        extra={"params": params, "label": label},
                    )
                )
        return files

    def fingerprint(self, file: SourceFile, **options: Any) -> str:
        """Return the sha256 of the generator parameters of ``file`` and the reader version."""
        payload = {"reader": self.name, "version": self.version, "params": file.extra["params"]}
        return sha256_json(payload, f"synthetic parameters of {file.path}")

    def read(self, file: SourceFile, **options: Any) -> RecordingSource:
        """Return the recording of ``file``; its signal is generated lazily by ``blocks()``."""
        check_options(self.name, options)
        try:
            p = dict(file.extra["params"])
        except KeyError as exc:
            msg = f"{file.path}: not a synthetic SourceFile (no extra['params']); use discover()"
            raise InputError(msg, path=str(file.path)) from exc
        block = int(options.get("block_samples") or BLOCK_SAMPLES)
        if block <= 0:
            msg = f"synthetic option 'block_samples': expected a positive integer, found {block!r}"
            raise SpecError(msg)
        s, r = int(p["subject_index"]), int(p["run_index"])
        fs = p["sampling_rate"]
        n = round(p["duration"] * fs)
        names = class_names(p["modality"], p["n_classes"])
        labels = None
        label = file.extra.get("label")
        if p["modality"] == "emg":
            channels = [f"channel{i}" for i in range(1, p["n_channels"] + 1)]
            units, types = ["V"] * len(channels), ["emg"] * len(channels)
            labels = _labels_from_schedule(_emg_schedule(p, s, r, n), n)
        else:
            channels, _ = _eeg_montage(p)
            units, types = ["V"] * len(channels), ["eeg"] * len(channels)
            if p["label_mode"] == "sample":
                labels = np.empty(n, dtype=np.int16)
                for a in range(0, n, SEGMENT):
                    m = min(SEGMENT, n - a)
                    labels[a : a + m] = _eeg_class_per_sample(p, s, r, a, m)
        attrs = {
            "generator": f"pipeline.io.synthetic {self.version}",
            "seed": p["seed"],
            "segment_samples": SEGMENT,
        }

        def blocks() -> Iterator[np.ndarray]:
            return _rechunk(generate_segments(p, s, r), block)

        return RecordingSource(
            n_samples=n,
            sampling_rate=float(fs),
            channels=channels,
            units=units,
            channel_types=types,
            modality=p["modality"],
            blocks=blocks,
            labels=labels,
            label_names=names if labels is not None else {},
            label=label,
            events=None,
            start_time=None,
            attrs=attrs,
        )
