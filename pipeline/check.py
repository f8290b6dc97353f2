"""Load a task spec and check it against the layers below, before any stage runs.

:func:`pipeline.spec.load_task` validates the file against the schema (every key, type and
value). What the schema cannot know is checked here, once, for every command that takes a
task (``cohort run``, ``cohort features --spec``), in two steps:

- :func:`check_task`, before any cluster starts: the reader is registered, the features
  write distinct columns, the window plan and preprocessing are consistent, and the model's
  parameters pass scikit-learn's own parameter validation (so ``solver: foo`` is refused in
  scikit-learn's words, not 20 s later from inside a fold);
- :func:`check_cohort`, once the store's index is known and before any feature is computed:
  the validation scheme against the cohort's subjects, sessions and runs, the window length
  against the recordings' durations, and every label the spec names against the labels the
  data has (a misspelt ``exclude_labels`` entry would silently change the classes).

Each error names the file and the key path, what was expected and what was found.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.exceptions import SpecError, UnknownFormatError
from pipeline.io import READERS, get_reader
from pipeline.spec import TaskSpec, load_task
from pipeline.spec.errors import closest, key_error
from pipeline.spec.io import READER_OPTIONS, parse_reader_options
from pipeline.spec.learn import MemberSpec
from pipeline.table import FeatureTableSpec

__all__ = ["check_cohort", "check_model", "check_task", "load_checked_task"]

# scikit-learn's InvalidParameterError text (sklearn.utils._param_validation); the parts are
# re-ordered into the formatter's "key, expected, found".
_SKLEARN_PARAM = re.compile(
    r"The '(?P<key>\w+)' parameter of (?P<owner>\w+) must be (?P<expected>.*)\. "
    r"Got (?P<found>.*) instead\.",
    re.S,
)


def check_task(spec: TaskSpec, source: str, *, model: bool = True) -> FeatureTableSpec:
    """Check a validated task against the registered readers and features.

    Parameters
    ----------
    spec : TaskSpec
    source : str
        The task file, first on every error line.
    model : bool
        Also :func:`check_model` (imports scikit-learn). ``cohort run`` leaves it to after
        the stage keys are known: a complete fit stage was fitted with these very parameters.

    Returns
    -------
    FeatureTableSpec
        What the task's feature stages compute.

    Raises
    ------
    SpecError
        Naming ``source``, the key path, what was expected and what was found.
    """
    try:
        get_reader(spec.data.format)
    except UnknownFormatError:
        known = ", ".join(sorted(READERS))
        raise key_error(
            source, "data.format", f"a reader name ({known})", spec.data.format
        ) from None
    # A misspelt reader option in the task file stops here, before any cluster starts
    # (a reader registered by a plug-in without a model checks its own).
    if spec.data.format in READER_OPTIONS:
        parse_reader_options(spec.data.format, spec.data.options, source, "data.options")
    table = FeatureTableSpec.from_task(spec)
    if model:
        check_model(spec.model, source)
        _check_calibration_weight(spec, source)
    _check_engine(spec, source)
    return table


def check_model(member: MemberSpec, source: str, path: str = "model") -> None:
    """Check a model config's parameters with scikit-learn's own parameter validation.

    The estimator is built from the spec (with the pipeline's defaults), its parameters are
    set one by one and ``_validate_params`` is called: the constraint text in the error is
    scikit-learn's, so it stays right whatever version is installed. Members of a
    ``soft_vote`` are checked under ``model.estimators.<i>``.

    Parameters
    ----------
    member : MemberSpec
        ``model`` of a task spec, or one of its members.
    source : str
        The task file, first on every error line.
    path : str
        Key path of ``member`` in the file.

    Raises
    ------
    SpecError
        ``<source>: key 'model.params.solver': expected a str among {...}
        (LinearDiscriminantAnalysis); found 'foo'``.
    """
    from pipeline.learn.estimators import make_classifier

    for i, sub in enumerate(member.estimators or []):
        check_model(sub, source, f"{path}.estimators.{i}")
    params = dict(member.params or {})
    try:
        # built without the user's parameters first: an unknown one is a TypeError there
        est = make_classifier(member.model_copy(update={"params": None}))
    except SpecError:
        return  # a registered factory that needs its parameters: nothing to compare against
    owner = type(est).__name__
    valid = sorted(est.get_params(deep=False))
    for key in params:
        if key not in valid:
            msg = (
                f"{source}: key '{path}.params.{key}': expected a parameter of {owner} "
                f"({', '.join(valid)}); found {key!r}{closest(key, valid)}"
            )
            raise SpecError(msg)
    est.set_params(**params)
    validate = getattr(est, "_validate_params", None)
    if validate is None:  # not a scikit-learn estimator: its own fit will judge
        return
    try:
        validate()
    except ValueError as err:  # InvalidParameterError derives from ValueError and TypeError
        m = _SKLEARN_PARAM.search(str(err))
        if m is None:
            raise SpecError(f"{source}: key '{path}.params': {err}") from None
        key = m["key"]
        found = params.get(key, m["found"])
        expected = f"{m['expected']} ({m['owner']})"
        raise key_error(source, f"{path}.params.{key}", expected, found) from None


def load_checked_task(
    path: str | os.PathLike[str], *, model: bool = True
) -> tuple[TaskSpec, FeatureTableSpec]:
    """Load a task spec (:func:`pipeline.spec.load_task`) and :func:`check_task` it.

    The one loader of every command that takes a task, so that a mistake gets the same
    message whichever command meets it.

    Returns
    -------
    (TaskSpec, FeatureTableSpec)
    """
    spec = load_task(path)
    return spec, check_task(spec, str(Path(path)), model=model)


def _labels_of(index: pd.DataFrame) -> list[str]:
    """Return the label names the cohort has: per-sample labels and per-recording ones."""
    names = {str(x) for v in index["labels"] for x in (v if v is not None else [])}
    if "label" in index:
        names |= {str(x) for x in index["label"].dropna()}
    return sorted(names)


def _values(column: pd.Series) -> pd.Series:
    return column.dropna().astype(str)


def _check_scheme(spec: TaskSpec, source: str, index: pd.DataFrame) -> None:
    scheme = spec.validation.scheme
    subjects = index["subject"].astype(str)
    n_subjects = subjects.nunique()
    if scheme in ("loso", "group_kfold") and n_subjects < 2:
        expected = (
            f"a scheme the cohort supports: {scheme!r} holds out whole subjects and the "
            f"cohort has {n_subjects} (within_subject splits one subject's runs)"
        )
        raise key_error(source, "validation.scheme", expected, scheme)
    if scheme == "group_kfold":
        n_splits = spec.validation.n_splits or 5
        if n_splits > n_subjects:
            expected = f"at most the cohort's number of subjects ({n_subjects})"
            raise key_error(source, "validation.n_splits", expected, n_splits)
    if scheme in ("cross_session", "within_subject"):
        by = "session" if scheme == "cross_session" else (spec.validation.by or "run")
        col = index[by] if by in index else pd.Series([None] * len(index), index=index.index)
        per_subject = pd.DataFrame({"s": subjects, "v": col}).dropna().groupby("s")["v"]
        most = int(per_subject.nunique().max()) if len(per_subject) else 0
        if most < 2:
            seen = sorted(_values(col).unique())
            expected = (
                f"a scheme the cohort supports: {scheme!r} needs a subject recorded in at "
                f"least 2 {by}s, and the cohort's {n_subjects} subject(s) have "
                f"{by}s {seen or 'none'} (at most {most} each); use 'loso' or "
                f"'within_subject' with another 'by'"
            )
            raise key_error(source, "validation.scheme", expected, scheme)
        seen = set(_values(col))
        for key in ("train", "test"):
            value = getattr(spec.validation, key, None)
            if value is not None and str(value) not in seen:
                expected = f"one of the cohort's {by}s {sorted(seen)}"
                err = key_error(source, f"validation.{key}", expected, value)
                raise SpecError(f"{err}{closest(str(value), seen)}")


def _check_windows(spec: TaskSpec, source: str, index: pd.DataFrame) -> None:
    w = spec.windows
    rates = index["sampling_rate"].astype(float)
    durations = index["duration"].astype(float)
    seconds = w.length if w.unit == "seconds" else w.length / rates
    fits = durations >= seconds
    if len(index) and not fits.any():
        i = int(durations.to_numpy().argmax())
        longest = f"{durations.iloc[i]:g} s ({index['recording'].iloc[i]})"
        expected = (
            f"a window no longer than the longest recording, {longest}, "
            f"else no recording has a window"
        )
        unit = "s" if w.unit == "seconds" else "samples"
        raise key_error(source, "windows.length", expected, f"{w.length:g} {unit}")


def _check_labels(spec: TaskSpec, source: str, index: pd.DataFrame) -> None:
    known = _labels_of(index)
    for i, name in enumerate(spec.windows.exclude_labels):
        if name not in known:
            expected = f"a label the data has ({', '.join(known) or 'none'})"
            err = key_error(source, f"windows.exclude_labels.{i}", expected, name)
            raise SpecError(f"{err}{closest(name, known)}")


def _one_class_recordings(spec: TaskSpec, index: pd.DataFrame) -> bool:
    """Return True if every recording can hold one class only (labels per recording)."""
    if not len(index):
        return False
    excluded = set(spec.windows.exclude_labels)
    for _, row in index.iterrows():
        names = {str(x) for x in (row.get("labels") if row.get("labels") is not None else [])}
        if len(names - excluded) > 1:
            return False
        if not names and pd.isna(row.get("label")):
            return False  # an unlabeled recording: nothing to say about its classes
    return True


def _check_calibration(spec: TaskSpec, source: str, index: pd.DataFrame) -> None:
    prep = spec.model.prep
    if prep is not None and prep.normalize == "recording" and _one_class_recordings(spec, index):
        expected = (
            "no per-recording normalisation on this cohort: every recording holds one class "
            "only (labels are constant per recording), so z-scoring each recording with its "
            "own windows (unlabeled calibration) removes the very difference between classes "
            "and the model could only learn what is left; use normalize: subject (it presumes "
            "unlabeled data of the new subject in every class, and the report says so) or none"
        )
        raise key_error(source, "model.prep.normalize", expected, prep.normalize)
    if spec.validation.scheme == "loso_calibrated" and _one_class_recordings(spec, index):
        expected = (
            "a scheme other than 'loso_calibrated' on this cohort: every recording holds one "
            "class only, so a calibration repetition is a whole recording and the subject "
            "would be scored on none of it; use 'loso'"
        )
        raise key_error(source, "validation.scheme", expected, "loso_calibrated")


def _check_calibration_weight(spec: TaskSpec, source: str) -> None:
    weight = spec.validation.calibration_weight
    if spec.validation.scheme != "loso_calibrated" or weight == 1:
        return
    from pipeline.learn.calibrate import unweightable  # scikit-learn, as check_model

    reason = unweightable(spec.model)
    if reason is not None:
        expected = f"1 (unweighted) for model.name {spec.model.name!r}: {reason}"
        raise key_error(source, "validation.calibration_weight", expected, weight or "balanced")


def _check_engine(spec: TaskSpec, source: str) -> None:
    prep = spec.model.prep
    if (
        prep is not None
        and prep.tangent_space is not None
        and spec.model.engine == "distributed"
        and prep.tangent_mean != "identity"
        and prep.recenter is None
        and (
            spec.model.name not in ("lda", "gaussian_nb")
            or spec.validation.scheme == "loso_calibrated"
        )
    ):
        expected = (
            "'memory' or 'auto' with model.prep.tangent_space at a fitted mean for "
            f"model.name {spec.model.name!r} and validation.scheme "
            f"{spec.validation.scheme!r}: the distributed engine computes each fold's mean "
            "(a pass of sums, or one per Riemannian step) and maps the windows there for "
            "lda and gaussian_nb, not under loso_calibrated; tangent_mean: identity (the "
            "log-Euclidean map, one window at a time) or recenter (each subject whitened by "
            "its own mean, the tangent space at the identity) runs on the others"
        )
        raise key_error(source, "model.engine", expected, spec.model.engine)
    if (
        spec.validation.scheme == "loso_calibrated"
        and spec.model.engine == "distributed"
        and spec.model.name != "lda"
    ):
        expected = (
            f"'memory' or 'auto' with validation.scheme 'loso_calibrated' and model.name "
            f"{spec.model.name!r}: the distributed engine fits a calibrated fold from the "
            "other subjects' moments plus w times the calibration windows', for lda only"
        )
        raise key_error(source, "model.engine", expected, spec.model.engine)


def check_cohort(spec: TaskSpec, source: str, index: pd.DataFrame | Mapping[str, Any]) -> None:
    """Check a task against the cohort it runs on, before any feature is computed.

    Parameters
    ----------
    spec : TaskSpec
    source : str
        The task file, first on every error line.
    index : pandas.DataFrame
        The cohort index (:attr:`pipeline.store.Cohort.index`): one row per recording with
        ``recording, subject, session, run, sampling_rate, duration, labels, label``.

    Raises
    ------
    SpecError
        ``validation.scheme`` the entities cannot support (``cross_session`` without
        sessions), ``windows.length`` longer than every recording, or a label of
        ``windows.exclude_labels`` that the data does not have (with the closest name).
    """
    index = pd.DataFrame(index)
    _check_windows(spec, source, index)
    _check_labels(spec, source, index)
    _check_scheme(spec, source, index)
    _check_calibration(spec, source, index)
