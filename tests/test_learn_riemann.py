"""Tangent space and label-free per-subject re-centring in FeaturePrep (pipeline.learn.riemann)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyriemann.tangentspace import TangentSpace
from pyriemann.utils.mean import mean_riemann
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from pipeline.exceptions import SpecError
from pipeline.features import make_block_function
from pipeline.features.covariance import pairwise_matrices
from pipeline.features.registry import table_columns
from pipeline.learn.prep import FeaturePrep
from pipeline.learn.riemann import recenter

CHANNELS = ["Fp1", "Fp2", "Cz", "Pz"]


def _table(n_subjects: int = 4, n_windows: int = 30, seed: int = 0) -> pd.DataFrame:
    """Windows of subjects whose spatial mixing differs; class 1 boosts one source."""
    rng = np.random.default_rng(seed)
    rows = []
    func, names = make_block_function(["logvar", "cov_oas"], 100.0, n_channels=4)
    columns, keep = table_columns(CHANNELS, names)
    for s in range(n_subjects):
        mix = rng.standard_normal((4, 4)) + 3 * np.eye(4)  # the subject's head
        for label in (0, 1):
            src = rng.standard_normal((n_windows * 100, 4))
            src[:, 0] *= 1.0 + 1.5 * label
            out = func(src @ mix.T * 1e-5, 100, 100)
            flat = out.reshape(len(out), -1)[:, keep]
            frame = pd.DataFrame(flat, columns=columns)
            frame.insert(0, "recording", f"s{s}_{label}")
            frame.insert(1, "subject", f"s{s}")
            frame.insert(2, "start", np.arange(len(frame), dtype=float))
            frame["label"] = label
            rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def test_tangent_space_equals_pyriemann_fitted_on_the_training_rows() -> None:
    table = _table()
    train, test = table[table.subject != "s3"], table[table.subject == "s3"]
    prep = FeaturePrep(features=["cov_oas"], tangent_space="cov_oas").fit(train)
    cols = [c for c in table.columns if c.endswith("__cov_oas")]
    mats = np.stack([_matrix(r) for r in test[cols].to_numpy()])
    tmats = np.stack([_matrix(r) for r in train[cols].to_numpy()])
    ref = TangentSpace(metric="riemann").fit(tmats).transform(mats)
    np.testing.assert_allclose(prep.transform(test), ref, rtol=1e-9, atol=1e-9)
    names = prep.get_feature_names_out()
    assert list(names[:2]) == ["Fp1:Fp1__ts_cov_oas", "Fp1:Fp2__ts_cov_oas"]
    assert len(names) == 10


def _matrix(upper: np.ndarray) -> np.ndarray:
    m = np.zeros((4, 4))
    m[np.triu_indices(4)] = upper
    return m + np.triu(m, 1).T


def test_recenter_whitens_each_subject_by_its_own_mean_without_labels() -> None:
    table = _table()
    cols = [c for c in table.columns if c.endswith("__cov_oas")]
    mats = np.stack([_matrix(r) for r in table[cols].to_numpy()])
    out = recenter(mats, table["subject"].to_numpy())
    for s in table.subject.unique():
        sel = (table.subject == s).to_numpy()
        np.testing.assert_allclose(mean_riemann(out[sel]), np.eye(4), atol=1e-6)
    shuffled = table.assign(label=np.random.default_rng(1).permutation(table.label))
    a = FeaturePrep(tangent_space="cov_oas", recenter="riemann").fit(table).transform(table)
    b = FeaturePrep(tangent_space="cov_oas", recenter="riemann").fit(shuffled).transform(table)
    np.testing.assert_array_equal(a, b)  # labels play no part
    # the held-out subject's vectors depend on its own windows only
    held = table[table.subject == "s0"]
    prep = FeaturePrep(tangent_space="cov_oas", recenter="euclid").fit(table[table.subject != "s0"])
    np.testing.assert_allclose(prep.transform(held), prep.transform(table)[: len(held)])


def test_recentring_helps_across_subjects_with_different_heads() -> None:
    table = _table(n_subjects=6, seed=2)
    scores = {}
    for name, kw in {"zero-shot": {}, "recentred": {"recenter": "riemann"}}.items():
        acc = []
        for s in table.subject.unique():
            train, test = table[table.subject != s], table[table.subject == s]
            model = make_pipeline(
                FeaturePrep(features=["cov_oas"], tangent_space="cov_oas", **kw),
                LogisticRegression(),
            )
            acc.append(model.fit(train, train.label).score(test, test.label))
        scores[name] = np.mean(acc)
    assert scores["recentred"] > 0.9
    assert scores["recentred"] > scores["zero-shot"]


def _fb_table(n_subjects: int = 3, seed: int = 3) -> pd.DataFrame:
    """A filter-bank table: two bands, each class boosting a different source per band."""
    rng = np.random.default_rng(seed)
    spec = {"name": "fb_cov", "bands": {"alpha": [8, 13], "beta": [13, 30]}}
    func, names = make_block_function([spec], 100.0, n_channels=4)
    columns, keep = table_columns(CHANNELS, names)
    rows = []
    for s in range(n_subjects):
        mix = rng.standard_normal((4, 4)) + 3 * np.eye(4)
        for label in (0, 1):
            src = rng.standard_normal((20 * 100, 4))
            src[:, label] *= 2.0
            out = func(src @ mix.T, 100, 100)
            frame = pd.DataFrame(out.reshape(len(out), -1)[:, keep], columns=columns)
            frame.insert(0, "recording", f"s{s}_{label}")
            frame.insert(1, "subject", f"s{s}")
            frame.insert(2, "start", np.arange(len(frame), dtype=float))
            frame["label"] = label
            rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def _band_matrices(table: pd.DataFrame, kind: str) -> np.ndarray:
    cols = [c for c in table.columns if c.endswith(f"__{kind}")]
    return np.stack([_matrix(r) for r in table[cols].to_numpy()])


@pytest.mark.parametrize("mean", ["riemann", "logeuclid", "euclid"])
def test_filter_bank_gives_one_tangent_space_per_band_at_the_chosen_mean(mean: str) -> None:
    table = _fb_table()
    train, test = table[table.subject != "s2"], table[table.subject == "s2"]
    kinds = ["fbcov_beta", "fbcov_alpha"]  # the order given is the order out
    prep = FeaturePrep(tangent_space=kinds, tangent_mean=mean).fit(train)
    ref = np.hstack(
        [
            TangentSpace(metric={"mean": mean, "map": "riemann"})
            .fit(_band_matrices(train, k))
            .transform(_band_matrices(test, k))
            for k in kinds
        ]
    )
    np.testing.assert_allclose(prep.transform(test), ref, rtol=1e-8, atol=1e-8)
    names = list(prep.get_feature_names_out())
    assert names[0] == "Fp1:Fp1__ts_fbcov_beta" and names[10] == "Fp1:Fp1__ts_fbcov_alpha"
    assert len(names) == 20
    recentred = FeaturePrep(tangent_space=kinds, recenter="euclid").fit(train).transform(test)
    assert recentred.shape == (len(test), 20)
    with pytest.raises(SpecError, match=r"a list of distinct ones.*found \['fbcov_beta', "):
        FeaturePrep(tangent_space=["fbcov_beta", "fbcov_beta"]).fit(train)
    with pytest.raises(SpecError, match="tangent_mean"):
        FeaturePrep(tangent_space=kinds, tangent_mean="harmonic").fit(train)


def test_errors_name_key_expected_found() -> None:
    table = _table(n_subjects=1)
    with pytest.raises(SpecError, match=r"key 'recenter'.*found None"):
        FeaturePrep(recenter="riemann").fit(table)
    with pytest.raises(SpecError, match="'tangent_space' expected a pairwise feature kind"):
        FeaturePrep(tangent_space="logvar").fit(table)
    with pytest.raises(SpecError, match="'riemann' mean: expected at least one training window"):
        FeaturePrep(tangent_space="cov_oas").fit(table.iloc[:0])
    assert FeaturePrep(tangent_space="cov_oas", tangent_mean="identity").fit(table.iloc[:0])
    with pytest.raises(SpecError, match="'tangent_space' reads '<ch_i>:<ch_j>__<kind>' columns"):
        FeaturePrep(tangent_space="cov_oas").fit(np.eye(3))
    flat = table.copy()
    flat[[c for c in table.columns if c.startswith("Cz:")]] = 0.0
    flat[[c for c in table.columns if c.endswith(":Cz__cov_oas")]] = 0.0
    with pytest.raises(SpecError, match="expected positive definite matrices, found"):
        FeaturePrep(tangent_space="cov_oas").fit(flat)


@pytest.fixture(scope="module")
def eeg_table(eeg_dir) -> pd.DataFrame:
    """OAS covariances of real EEG: 3 subjects x (rest, task), the first 60 s, 4 s windows."""
    mne = pytest.importorskip("mne")
    func, names = make_block_function(["cov_oas"], 500.0, n_channels=19)
    frames = []
    for subject in ("00", "01", "02"):
        for run, label in (("1", "rest"), ("2", "task")):
            path = eeg_dir / f"Subject{subject}_{run}.edf"
            raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
            x = raw.get_data(picks=raw.ch_names[:19], stop=500 * 60).T
            channels = [c.removeprefix("EEG ") for c in raw.ch_names[:19]]
            columns, keep = table_columns(channels, names)
            out = func(x, 2000, 1000)
            frame = pd.DataFrame(out.reshape(len(out), -1)[:, keep], columns=columns)
            frame.insert(0, "recording", f"sub-{subject}_run-{run}")
            frame.insert(1, "subject", subject)
            frame.insert(2, "session", "")
            frame.insert(3, "run", run)
            frame.insert(4, "start", np.arange(len(frame), dtype=float) * 2.0)
            frame["label"] = label
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_log_euclidean_tangent_space_runs_on_the_distributed_engine_exactly(
    eeg_table, client
) -> None:
    from pipeline.learn import fit_and_validate

    ddf = _as_dask(eeg_table)
    prep = {"features": ["cov_oas"], "tangent_space": "cov_oas", "tangent_mean": "identity"}
    cfg = {"name": "lda", "params": {"solver": "lsqr", "shrinkage": "auto"}, "prep": prep}
    scheme = {"scheme": "loso", "n_permutations": 0}
    model_m, rep_m = fit_and_validate(eeg_table, cfg | {"engine": "memory"}, scheme, n_jobs=1)
    model_d, rep_d = fit_and_validate(ddf, cfg | {"engine": "distributed"}, scheme)
    assert rep_d["engine"]["name"] == "distributed" and rep_m["engine"]["name"] == "memory"
    assert rep_d["overall"]["confusion_matrix"] == rep_m["overall"]["confusion_matrix"]
    assert abs(rep_d["overall"]["roc_auc"] - rep_m["overall"]["roc_auc"]) < 1e-9
    for s, m in rep_m["per_subject"].items():
        assert rep_d["per_subject"][s]["confusion_matrix"] == m["confusion_matrix"]
    pm, pd_ = model_m.predict(eeg_table), model_d.predict(eeg_table)
    cols = [c for c in pm.columns if c.startswith("proba__")]
    np.testing.assert_allclose(pd_[cols].to_numpy(), pm[cols].to_numpy(), atol=1e-9)
    # the vectors are logm(C) (off-diagonal x sqrt 2): the log-Euclidean map at the identity
    prepared = model_m.model["prep"].transform(eeg_table.iloc[:3])
    upper = np.triu_indices(19)
    mats, _ = pairwise_matrices(
        eeg_table.iloc[:3, 5:-1].to_numpy(), eeg_table.columns[5:-1], "cov_oas"
    )
    logs = np.stack([_logm(m) for m in mats])
    weights = np.where(upper[0] == upper[1], 1.0, np.sqrt(2))
    np.testing.assert_allclose(prepared, logs[:, upper[0], upper[1]] * weights, atol=1e-9)


@pytest.mark.parametrize("recenter", ["riemann", "euclid"])
def test_recentring_runs_on_the_distributed_engine_exactly(eeg_table, client, recenter) -> None:
    """Each subject whitened by its own mean: per subject on the workers (a partition holds
    the subject whole), the tangent space at the identity; equal to the memory engine."""
    from pipeline.learn import fit_and_validate

    prep = {"features": ["cov_oas"], "tangent_space": "cov_oas", "recenter": recenter}
    ddf, cfg, _, (model_m, _), (model_d, _) = _both_engines(eeg_table, prep)
    pm, pd_ = model_m.predict(eeg_table), model_d.predict(eeg_table)
    cols = [c for c in pm.columns if c.startswith("proba__")]
    np.testing.assert_allclose(pd_[cols].to_numpy(), pm[cols].to_numpy(), atol=1e-9)
    # a subject split across the folds' sides would be re-centred with rows the memory
    # engine does not see together: refused
    with pytest.raises(SpecError, match=r"recenter .* validation.scheme 'within_subject'"):
        fit_and_validate(
            ddf, cfg | {"engine": "distributed"}, {"scheme": "within_subject", "by": "run"}
        )


@pytest.mark.parametrize("mean", ["logeuclid", "euclid", "riemann"])
def test_tangent_space_at_each_folds_mean_runs_on_the_distributed_engine(
    eeg_table, client, mean
) -> None:
    """Each fold's mean from passes of per-subject sums (Riemannian: one pass per step of
    pyriemann's iteration), the windows mapped there: the memory engine's folds (pyriemann's
    means of the training rows). Tolerance 1e-9 on the figures and 1e-7 on the bundle's
    probabilities: the Riemannian iteration sums in another order and stops at its
    tolerance 1e-8, so its mean agrees to rounding unless a stopping test falls within
    rounding of its threshold (then within 1e-8)."""
    from pipeline.learn import fit_and_validate

    prep = {"features": ["cov_oas"], "tangent_space": "cov_oas", "tangent_mean": mean}
    _, cfg, scheme, (model_m, rep_m), (model_d, rep_d) = _both_engines(eeg_table, prep)
    names = [p["name"] for p in rep_d["engine"]["passes"]]
    assert names[:2] == ["statistics", "reference"] and names[-1] == "prediction"
    assert ("riemann-0" in names) == (mean == "riemann")
    ref_m = model_m.model["prep"].reference_[0]
    np.testing.assert_allclose(model_d.model["prep"].reference_[0], ref_m, atol=1e-8)
    pm, pd_ = model_m.predict(eeg_table), model_d.predict(eeg_table)
    cols = [c for c in pm.columns if c.startswith("proba__")]
    np.testing.assert_allclose(pd_[cols].to_numpy(), pm[cols].to_numpy(), atol=1e-7)
    # the identity map would give other figures: the fold means are what is compared
    ident = {**prep, "tangent_mean": "identity"}
    _, rep_i = fit_and_validate(eeg_table, cfg | {"prep": ident, "engine": "memory"}, scheme)
    assert abs(rep_i["overall"]["roc_auc"] - rep_m["overall"]["roc_auc"]) > 1e-6


def _as_dask(table: pd.DataFrame):
    """Return ``table`` as a dask table of one partition per recording."""
    import dask
    import dask.dataframe as dd

    parts = [dask.delayed(g) for _, g in table.groupby("recording", sort=True)]
    return dd.from_delayed(parts, meta=table.iloc[:0], verify_meta=False)


def _both_engines(eeg_table: pd.DataFrame, prep: dict, n_permutations: int = 0) -> tuple:
    """Run LOSO LDA on ``prep`` with both engines and check the figures agree (1e-9).

    Returns the dask table, model config, scheme and both engines' (bundle, report).
    """
    from pipeline.learn import fit_and_validate

    ddf = _as_dask(eeg_table)
    cfg = {"name": "lda", "params": {"solver": "lsqr", "shrinkage": "auto"}, "prep": prep}
    scheme = {"scheme": "loso", "n_permutations": n_permutations}
    memory = fit_and_validate(eeg_table, cfg | {"engine": "memory"}, scheme, n_jobs=1)
    dist = fit_and_validate(ddf, cfg | {"engine": "distributed"}, scheme)
    rep_m, rep_d = memory[1], dist[1]
    assert rep_d["engine"]["name"] == "distributed" and rep_m["engine"]["name"] == "memory"
    assert rep_d["overall"]["confusion_matrix"] == rep_m["overall"]["confusion_matrix"]
    assert abs(rep_d["overall"]["roc_auc"] - rep_m["overall"]["roc_auc"]) < 1e-9
    for s, m in rep_m["per_subject"].items():
        assert rep_d["per_subject"][s]["confusion_matrix"] == m["confusion_matrix"]
        assert abs(rep_d["per_subject"][s]["roc_auc"] - m["roc_auc"]) < 1e-9, s
    return ddf, cfg, scheme, memory, dist


def _logm(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.log(w)) @ v.T


def test_what_the_distributed_engine_refuses_of_the_tangent_space(tmp_path) -> None:
    import yaml

    from pipeline.check import load_checked_task

    task = yaml.safe_load(open("tasks/eeg_arithmetic.yaml").read())
    task["model"] = {"name": "lda", "engine": "distributed", "prep": {"tangent_space": "cov_oas"}}
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    load_checked_task(path)  # lda: each fold's mean on the distributed engine
    task["model"]["name"] = "random_forest"
    path.write_text(yaml.safe_dump(task))
    with pytest.raises(
        SpecError,
        match=r"model\.engine.*tangent_space at a fitted mean for model\.name 'random_forest'",
    ):
        load_checked_task(path)
    task["model"]["name"] = "lda"
    task["model"]["prep"] |= {"recenter": "riemann"}  # each subject at the identity
    path.write_text(yaml.safe_dump(task))
    load_checked_task(path)
    del task["model"]["prep"]["recenter"]
    task["model"]["prep"] |= {"tangent_mean": "identity"}  # the log-Euclidean map
    path.write_text(yaml.safe_dump(task))
    load_checked_task(path)
    task["model"]["engine"] = "memory"
    path.write_text(yaml.safe_dump(task))
    load_checked_task(path)


def test_logreg_cv_chooses_c_on_the_training_rows_only() -> None:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.preprocessing import StandardScaler

    from pipeline.learn.estimators import make_estimator

    table = _fb_table()
    train, test = table[table.subject != "s2"], table[table.subject == "s2"]
    kinds = ["fbcov_alpha", "fbcov_beta"]
    cfg = {"name": "logreg_cv", "prep": {"features": kinds, "tangent_space": kinds}}
    model = make_estimator(cfg, seed=0).fit(train, train.label)
    ts = FeaturePrep(features=kinds, tangent_space=kinds).fit(train)
    scale = StandardScaler().fit(ts.transform(train))
    ref = LogisticRegressionCV(max_iter=2000, class_weight="balanced", random_state=0)
    ref.fit(scale.transform(ts.transform(train)), train.label)
    assert model[-1].C_[0] == ref.C_[0] and ref.C_[0] in np.logspace(-4, 4, 10)
    np.testing.assert_allclose(
        model.predict_proba(test), ref.predict_proba(scale.transform(ts.transform(test)))
    )


def test_permutation_test_on_the_distributed_engine_is_the_memory_engines(
    eeg_table, client
) -> None:
    """Labels constant per recording: the memory engine's permutations of whole recordings'
    labels within subject, every permuted fold model from per-recording moments, one
    scoring pass; the same nulls and p-values (1e-9)."""
    from pipeline.learn import fit_and_validate

    prep = {"features": ["cov_oas"], "tangent_space": "cov_oas", "tangent_mean": "identity"}
    _, cfg, scheme, (_, rep_m), (_, rep_d) = _both_engines(eeg_table, prep, 6)
    perm_m, perm_d = rep_m["permutation"], rep_d["permutation"]
    assert perm_d["unit"] == perm_m["unit"] == "recording"
    assert perm_d["n_permutations"] == 6 and perm_d["refits"] == perm_m["refits"]
    for name in ("balanced_accuracy", "roc_auc"):
        for key in ("observed", "p_value", "null_mean", "null_q95"):
            assert perm_d[name][key] == pytest.approx(perm_m[name][key], abs=1e-9), (name, key)
    names = [p["name"] for p in rep_d["engine"]["passes"]]
    assert names[-2:] == ["permutation-statistics", "permutation"]
    # another seed draws other permutations: the nulls are not a constant
    _, rep_s = fit_and_validate(eeg_table, cfg | {"engine": "memory"}, scheme, 5, n_jobs=1)
    assert rep_s["permutation"]["roc_auc"]["null_mean"] != perm_m["roc_auc"]["null_mean"]


def test_distributed_permutation_skipped_with_the_reason_for_window_labels() -> None:
    import dask.dataframe as dd

    from pipeline.learn.distributed import fit_and_validate_distributed
    from pipeline.learn.synthetic import synthetic_feature_table

    table = synthetic_feature_table(n_subjects=3, n_runs=1, blocks_per_class=2, seed=1)
    _, rep = fit_and_validate_distributed(
        dd.from_pandas(table, npartitions=1), {"name": "lda"}, {"scheme": "loso"}
    )
    assert rep["permutation"]["p_value"] is None
    assert "a recording holds several classes" in rep["permutation"]["skipped"]


def test_distributed_permutation_reuses_the_per_recording_statistics_pass(client) -> None:
    """A scheme whose statistics unit is the recording (``cross_session``): the
    permutation test takes the statistics pass's per-recording moments (no pass of its own)
    and still gives the memory engine's nulls and p-values."""
    import dask.dataframe as dd

    from pipeline.learn import fit_and_validate
    from pipeline.learn.synthetic import synthetic_feature_table

    table = synthetic_feature_table(n_subjects=3, n_sessions=2, n_runs=4, n_classes=2, seed=4)
    # one class per recording (odd runs c0, even runs c1), the gaps left unlabeled
    odd = table["run"].astype(str).str[-1].astype(int) % 2 == 1
    run_class = np.where(odd, "c0", "c1")
    table["label"] = np.where(table["label"].notna(), run_class, None)
    assert (table.dropna(subset=["label"]).groupby("recording")["label"].nunique() == 1).all()
    cfg = {"name": "lda", "params": {"solver": "lsqr", "shrinkage": "auto"}}
    scheme = {"scheme": "cross_session", "n_permutations": 4}
    _, rep_m = fit_and_validate(table, cfg | {"engine": "memory"}, scheme, n_jobs=1)
    ddf = dd.from_pandas(table, npartitions=3, sort=False)
    _, rep_d = fit_and_validate(ddf, cfg | {"engine": "distributed"}, scheme)
    perm_m, perm_d = rep_m["permutation"], rep_d["permutation"]
    assert perm_d["n_permutations"] == 4 and perm_d["refits"] == perm_m["refits"]
    for name in ("balanced_accuracy", "roc_auc"):
        for key in ("observed", "p_value", "null_mean", "null_q95"):
            assert perm_d[name][key] == pytest.approx(perm_m[name][key], abs=1e-9), (name, key)
    names = [p["name"] for p in rep_d["engine"]["passes"]]
    assert "permutation" in names and "permutation-statistics" not in names
