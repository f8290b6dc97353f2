"""The statistics engine: exact LDA / Gaussian NB from moments, and engine: distributed."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.naive_bayes import GaussianNB
from sklearn.preprocessing import StandardScaler

from pipeline.exceptions import SpecError
from pipeline.learn import FeaturePrep, fit_and_validate
from pipeline.learn.distributed import (
    fit_and_validate_distributed,
    resolve_engine,
    source_nbytes,
    statistics_pass,
    table_nbytes,
)
from pipeline.learn.estimators import model_spec
from pipeline.learn.sufficient import (
    class_moments,
    gaussian_nb_from_moments,
    lda_from_moments,
    scaler_from_moments,
)
from pipeline.learn.synthetic import synthetic_feature_table

PREP = {"log": ["mav"], "normalize": "recording"}


def _data(k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(500, 6)) * rng.uniform(0.5, 3, 6) + rng.normal(size=6)
    y = np.array([f"c{i}" for i in rng.integers(0, k, 500)])
    X[y == "c1"] += 0.8
    return X, y


@pytest.mark.parametrize("solver", ["lsqr", "eigen"])
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("shrinkage", ["auto", 0.3, None])
def test_lda_from_moments_equals_sklearn_fit(k, shrinkage, solver):
    X, y = _data(k, seed=k)
    # moments of two halves summed: what the partitions of a table give
    halves = [slice(0, 200), slice(200, None)]
    stats = {}
    for h in halves:
        for c in np.unique(y):
            m = class_moments(X[h][y[h] == c], fourth=True)
            stats[c] = stats[c] + m if c in stats else m
    scaler = scaler_from_moments(stats)
    ref_scaler = StandardScaler().fit(X)
    np.testing.assert_allclose(scaler.scale_, ref_scaler.scale_, rtol=1e-12)
    Xs = ref_scaler.transform(X)
    lda = lda_from_moments(stats, scaler, {"solver": solver, "shrinkage": shrinkage})
    ref = LinearDiscriminantAnalysis(solver=solver, shrinkage=shrinkage).fit(Xs, y)
    np.testing.assert_allclose(lda.covariance_, ref.covariance_, atol=1e-12)
    np.testing.assert_allclose(lda.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(lda.intercept_, ref.intercept_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(lda.predict_proba(Xs), ref.predict_proba(Xs), atol=1e-12)
    assert list(lda.classes_) == list(ref.classes_)
    if solver == "eigen":
        np.testing.assert_allclose(
            lda.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-9
        )


def test_gaussian_nb_from_moments_equals_sklearn_fit():
    X, y = _data(3, seed=5)
    stats = {c: class_moments(X[y == c], fourth=False) for c in np.unique(y)}
    scaler = scaler_from_moments(stats)
    Xs = StandardScaler().fit_transform(X)
    nb = gaussian_nb_from_moments(stats, scaler, None)
    ref = GaussianNB().fit(Xs, y)
    np.testing.assert_allclose(nb.var_, ref.var_, rtol=1e-10)
    np.testing.assert_allclose(nb.predict_proba(Xs), ref.predict_proba(Xs), atol=1e-12)


def test_lda_refuses_what_it_does_not_reproduce():
    X, y = _data(2, seed=1)
    stats = {c: class_moments(X[y == c], fourth=False) for c in np.unique(y)}
    with pytest.raises(SpecError, match=r"'lsqr' or 'eigen'.*got solver 'svd'.*engine: memory"):
        lda_from_moments(stats, scaler_from_moments(stats), {"solver": "svd"})
    with pytest.raises(SpecError, match=r"shrinkage='auto' needs the fourth moments"):
        lda_from_moments(stats, scaler_from_moments(stats), {"shrinkage": "auto"})


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_feature_table(n_subjects=5, n_runs=2, subject_gain=1.2, seed=7)


def _per_recording(table: pd.DataFrame) -> dd.DataFrame:
    """Return ``table`` as a dask DataFrame of one partition per recording."""
    parts = [dask.delayed(g) for _, g in table.groupby("recording", sort=True)]
    return dd.from_delayed(parts, meta=table.iloc[:0], verify_meta=False)


def test_statistics_of_the_normalised_features_equal_the_pandas_zscore(table):
    # partition by partition (one recording each) vs FeaturePrep on the whole table
    prep = FeaturePrep(**PREP).fit(table)
    summed = {}
    for _, part in table.groupby("recording", sort=True):
        _, moments = statistics_pass(part, prep, "subject", fourth=False)
        for key, m in moments.items():
            summed[key] = summed[key] + m if key in summed else m
    X = prep.transform(table)
    lab = table["label"].notna().to_numpy()
    for (subject, cls), m in summed.items():
        rows = lab & (table["subject"] == subject).to_numpy() & (table["label"] == cls).to_numpy()
        ref = class_moments(X[rows], fourth=False)
        assert m.n == ref.n
        np.testing.assert_allclose(m.s1, ref.s1, atol=1e-9)
        np.testing.assert_allclose(m.s2, ref.s2, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "params", "validation"),
    [
        ("lda", {"solver": "lsqr", "shrinkage": "auto"}, {"scheme": "group_kfold", "n_splits": 3}),
        ("lda", {"shrinkage": 0.2}, {"scheme": "within_subject"}),
        ("gaussian_nb", None, {"scheme": "loso"}),
        ("lda", {"solver": "eigen", "shrinkage": "auto"}, {"scheme": "loso"}),
    ],
)
def test_distributed_engine_equals_memory_engine(table, name, params, validation):
    cfg = {"name": name, "prep": PREP, "smooth": 3} | ({"params": params} if params else {})
    model_m, rep_m = fit_and_validate(table, cfg | {"engine": "memory"}, validation, n_jobs=1)
    model_d, rep_d = fit_and_validate(_per_recording(table), cfg, validation)
    assert rep_d["engine"]["name"] == "distributed"
    assert rep_m["engine"]["name"] == "memory"
    assert set(rep_d) == set(rep_m)
    assert abs(rep_d["overall"]["balanced_accuracy"] - rep_m["overall"]["balanced_accuracy"]) < 1e-9
    assert rep_d["overall"]["confusion_matrix"] == rep_m["overall"]["confusion_matrix"]
    for s, m in rep_m["per_subject"].items():
        assert rep_d["per_subject"][s]["confusion_matrix"] == m["confusion_matrix"]
    assert [f["name"] for f in rep_d["folds"]] == [f["name"] for f in rep_m["folds"]]
    assert [f["n_train_windows"] for f in rep_d["folds"]] == [
        f["n_train_windows"] for f in rep_m["folds"]
    ]
    pm, pd_ = model_m.predict(table), model_d.predict(table)
    cols = [c for c in pm.columns if c.startswith("proba__")]
    np.testing.assert_allclose(pd_[cols].to_numpy(), pm[cols].to_numpy(), atol=1e-9)
    assert type(model_d.model[-1]) is type(model_m.model[-1])


@pytest.mark.parametrize(
    "validation", [{"scheme": "loso"}, {"scheme": "group_kfold", "n_splits": 3}]
)
def test_subject_normalisation_on_the_distributed_engine_equals_the_memory_engine(
    table, validation
):
    # one partition per recording: the engine must bring a subject's recordings together
    # before z-scoring them with the subject's statistics
    prep = {"log": ["mav"], "normalize": "subject"}
    cfg = {"name": "lda", "params": {"solver": "lsqr", "shrinkage": "auto"}, "prep": prep}
    model_m, rep_m = fit_and_validate(table, cfg | {"engine": "memory"}, validation, n_jobs=1)
    model_d, rep_d = fit_and_validate(_per_recording(table), cfg, validation)
    assert rep_d["engine"]["name"] == "distributed"
    assert rep_d["prep"] == rep_m["prep"]
    assert abs(rep_d["overall"]["balanced_accuracy"] - rep_m["overall"]["balanced_accuracy"]) < 1e-9
    assert rep_d["overall"]["confusion_matrix"] == rep_m["overall"]["confusion_matrix"]
    assert rep_d["per_subject"].keys() == rep_m["per_subject"].keys()
    for s, m in rep_m["per_subject"].items():
        assert rep_d["per_subject"][s]["confusion_matrix"] == m["confusion_matrix"]
    pm, pd_ = model_m.predict(table), model_d.predict(table)
    cols = [c for c in pm.columns if c.startswith("proba__")]
    np.testing.assert_allclose(pd_[cols].to_numpy(), pm[cols].to_numpy(), atol=1e-9)


def test_partitions_held_on_the_workers_give_the_same_results(table):
    cfg = {"name": "lda", "params": {"shrinkage": "auto", "solver": "lsqr"}, "prep": PREP}
    ddf = _per_recording(table)
    _, kept = fit_and_validate_distributed(ddf, cfg, {"scheme": "loso"}, persist=True)
    _, read = fit_and_validate_distributed(ddf, cfg, {"scheme": "loso"}, persist=False)
    assert kept["engine"]["persisted"] is True
    assert read["engine"]["persisted"] is False
    assert kept["overall"] == read["overall"]
    assert kept["per_subject"] == read["per_subject"]
    # not read from Parquet: the size is unknown, so None keeps nothing
    _, auto = fit_and_validate_distributed(ddf, cfg, {"scheme": "loso"})
    assert auto["engine"]["persisted"] is False


def test_each_pass_is_a_named_task_group(table):
    from dask.callbacks import Callback
    from dask.utils import key_split

    keys: list[str] = []
    cfg = {"name": "random_forest", "params": {"n_estimators": 5}, "prep": PREP}
    cfg |= {"engine": "distributed", "max_train_windows": 300}
    with (
        Callback(pretask=lambda key, dsk, state: keys.append(key)),
        dask.config.set(scheduler="sync"),
    ):
        fit_and_validate_distributed(_per_recording(table), cfg, {"scheme": "loso"})
    groups = {key_split(k) for k in keys}
    assert {"statistics-pass", "subsample-pass", "fold-fit-pass", "prediction-pass"} <= groups


def test_source_nbytes_of_a_written_table(table, tmp_path):
    for rec, g in table.groupby("recording", sort=True):
        g.to_parquet(tmp_path / f"{rec}.parquet")
    files = sorted(str(p) for p in tmp_path.glob("*.parquet"))
    assert source_nbytes(dd.from_map(pd.read_parquet, files)) == table_nbytes(files)
    assert source_nbytes(_per_recording(table)) is None


def test_distributed_bad_input(table):
    cfg = {"name": "lda", "prep": PREP, "engine": "distributed"}
    bad = table.copy()
    rec, start = bad["recording"].iloc[40], float(bad["start"].iloc[40])
    bad.loc[40, "ch0__zc"] = np.inf
    with pytest.raises(
        SpecError,
        match=rf"recording '{rec}', column 'ch0__zc', window start {start!r} s "
        r"holds inf; expected finite",
    ):
        fit_and_validate(bad, cfg, {"scheme": "loso"})
    halves = dd.from_pandas(table, npartitions=3, sort=False)
    with pytest.raises(SpecError, match=r"spans 2 partitions; the distributed engine needs"):
        fit_and_validate(halves, cfg, {"scheme": "loso"})
    with pytest.raises(
        SpecError,
        match=r"key 'model.engine': expected 'memory' or 'auto' for model.name 'logreg': the "
        r"distributed engine fits \['lda', 'gaussian_nb', 'sgd', 'random_forest', "
        r"'gradient_boosting', 'soft_vote'\] only; found 'distributed'",
    ):
        fit_and_validate(table, cfg | {"name": "logreg"}, {"scheme": "loso"})


def test_a_class_absent_from_a_training_fold_is_reported(table):
    one = table.copy()
    # only subject 0 has class "c2": its LOSO fold trains without it
    first = one["subject"] == sorted(one["subject"].unique())[0]
    one.loc[~first & (one["label"] == one["label"].dropna().iloc[0]), "label"] = None
    absent = one["label"].dropna().iloc[0]
    cfg = {"name": "lda", "prep": PREP, "engine": "distributed"}
    _, report = fit_and_validate(one, cfg, {"scheme": "loso"})
    flagged = [f for f in report["folds"] if "classes_absent_from_training" in f]
    assert [f["classes_absent_from_training"] for f in flagged] == [[absent]]
    assert flagged[0]["test_subjects"] == [sorted(one["subject"].unique())[0]]


def test_engine_choice_by_memory_budget():
    spec = model_spec({"name": "lda", "memory_budget": "1MB"})
    assert spec.memory_budget == 1_000_000
    assert resolve_engine(spec, 999_999) == "memory"
    assert resolve_engine(spec, 2_000_000) == "distributed"
    assert resolve_engine(model_spec({"name": "lda", "engine": "memory"}), 10**12) == "memory"
    logreg = model_spec({"name": "logreg", "memory_budget": 1000})
    with pytest.raises(
        SpecError, match=r"above model.memory_budget 0.00 GB, and model.name 'logreg'"
    ):
        resolve_engine(logreg, 10**9)
    with pytest.raises(SpecError, match=r"model.memory_budget.*a positive size.*'lots'"):
        model_spec({"name": "lda", "memory_budget": "lots"})


def test_random_forest_fits_on_a_reproducible_capped_subsample(table):
    cfg = {
        "name": "random_forest",
        "params": {"n_estimators": 20},
        "prep": PREP,
        "engine": "distributed",
        "max_train_windows": 300,
    }
    ddf = _per_recording(table)
    model, report = fit_and_validate(ddf, cfg, {"scheme": "loso"}, seed=3)
    _, again = fit_and_validate(ddf, cfg, {"scheme": "loso"}, seed=3)
    sub = report["engine"]["subsample"]
    assert sub == again["engine"]["subsample"]
    assert report["overall"] == again["overall"]
    assert sub["n_windows"] <= 300
    assert sum(n for per in sub["windows"].values() for n in per.values()) == sub["n_windows"]
    assert sorted(sub["windows"]) == sorted(table["subject"].unique())
    labeled = table["label"].notna().sum()
    # proportional by recording x class: every cell gets its share, floored
    for subject, per in sub["windows"].items():
        for cls, n in per.items():
            cells = table[(table["subject"] == subject) & (table["label"] == cls)]
            share = sum(len(g) * 300 // labeled for _, g in cells.groupby("recording"))
            assert n == share
    _, other = fit_and_validate(ddf, cfg, {"scheme": "loso"}, seed=4)
    assert other["engine"]["subsample"]["windows"] == sub["windows"]  # counts, not rows
    assert report["overall"]["balanced_accuracy"] > 0.5
    assert type(model.model[-1]).__name__ == "RandomForestClassifier"
    assert [p["name"] for p in report["engine"]["passes"]] == [
        "statistics",
        "subsample",
        "fold-fit",
        "prediction",
    ]


def test_tree_folds_are_fitted_in_parallel_on_the_workers(table, client):
    cfg = {
        "name": "random_forest",
        "params": {"n_estimators": 10},
        "prep": PREP,
        "engine": "distributed",
        "max_train_windows": 300,
    }
    ddf = _per_recording(table)
    with dask.config.set(scheduler="sync"):  # no client: the folds fitted one by one here
        serial_model, serial = fit_and_validate_distributed(ddf, cfg, {"scheme": "loso"}, 3)
    from dask.utils import key_split
    from distributed import get_task_stream

    with get_task_stream(client) as ts:
        model, report = fit_and_validate_distributed(ddf, cfg, {"scheme": "loso"}, 3)
    fits = [t for t in ts.data if key_split(t["key"]) == "fold-fit-pass"]
    # every fold's fit and the final one ran as tasks on the workers, on both of them
    assert len(fits) == len(report["folds"]) + 1 == table["subject"].nunique() + 1
    assert len({t["worker"] for t in fits}) == 2
    assert report["overall"] == serial["overall"]
    assert report["per_subject"] == serial["per_subject"]
    X = table.loc[table["label"].notna()]
    np.testing.assert_array_equal(model.model.predict_proba(X), serial_model.model.predict_proba(X))


def test_a_subsample_above_the_memory_budget_says_what_cap_fits(table):
    cfg = {
        "name": "random_forest",
        "prep": PREP,
        "engine": "distributed",
        "max_train_windows": 10_000,
        "memory_budget": 48_000,
    }
    # 4 features x 8 bytes x 3 copies = 96 bytes a window: 500 windows fit in 48 000 bytes
    n_features = len(FeaturePrep(**PREP).fit(table).columns_)
    with pytest.raises(
        SpecError,
        match=rf"max_train_windows 10000: a subsample .* of {n_features} features .* a cap of "
        rf"{48_000 // (24 * n_features)} windows would fit",
    ):
        fit_and_validate(_per_recording(table), cfg, {"scheme": "loso"})


def test_the_report_records_the_workers_peak_memory(table):
    from distributed import Client, LocalCluster

    cfg = {"name": "lda", "params": {"shrinkage": "auto", "solver": "lsqr"}, "prep": PREP}
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster),
    ):
        _, rep = fit_and_validate_distributed(_per_recording(table), cfg, {"scheme": "loso"})
    end = rep["engine"]["memory"]["end"]
    assert len(end["worker_peak_rss_mb"]) == 1
    for w, now in end["worker_rss_mb"].items():
        # the lifetime peak (getrusage) is at least the current RSS, within page rounding
        assert end["worker_peak_rss_mb"][w] >= now - 1.0
    assert end["client_peak_rss_mb"] >= end["client_rss_mb"] - 1.0


def test_one_progress_bar_per_pass_fed_by_the_futures(table, client, monkeypatch):
    import tqdm.auto

    bars: list[dict] = []

    class Bar:
        def __init__(self, total, desc, unit, disable):
            self.state = {"desc": desc, "total": total, "done": 0}
            bars.append(self.state)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            self.state["done"] += n

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    cfg = {"name": "lda", "params": {"shrinkage": "auto", "solver": "lsqr"}, "prep": PREP}
    _, report = fit_and_validate_distributed(_per_recording(table), cfg, {"scheme": "loso"})
    assert [b["desc"] for b in bars] == ["statistics pass", "prediction pass"]
    # one step per task, every one completed
    assert all(b["done"] == b["total"] > 0 for b in bars)
    assert [p["name"] for p in report["engine"]["passes"]] == ["statistics", "prediction"]


@pytest.mark.parametrize("k", [2, 3])
def test_trust_sections_from_codes_equal_those_from_names(k):
    """The distributed engine's report path (integer codes, no per-window object array)
    gives the sections the memory engine's names give, a subject code without windows
    included (the bootstrap draws among the scored subjects only)."""
    from pipeline.learn.metrics import (
        class_codes,
        per_subject_metrics,
        roc_curves,
        roc_curves_from_codes,
    )
    from pipeline.learn.trust import trust_sections, trust_sections_from_codes
    from pipeline.learn.validation import validation_spec

    rng = np.random.default_rng(k)
    classes = [f"c{i}" for i in range(k)]
    names = np.array(["s0", "s1", "s2", "s3"])  # s2 scores no window
    subj = rng.choice([0, 1, 3], size=400)
    label = rng.integers(0, k, 400)
    proba = rng.dirichlet(np.ones(k), 400).round(2)  # rounded: ties in the scores
    proba[np.arange(400), label] += 0.3 * (subj != 3)  # subject s3 near chance
    proba /= proba.sum(1, keepdims=True)
    y = np.asarray(classes, dtype=object)[label]
    yp = np.asarray(classes, dtype=object)[proba.argmax(1)]
    vspec = validation_spec({"scheme": "loso"})
    per, _ = per_subject_metrics(names[subj], y, yp, proba, classes)
    want = trust_sections(names[subj], y, yp, proba, classes, per, vspec, None, 3)
    per2, _ = per_subject_metrics(names[subj], y, yp, proba, classes)
    got = trust_sections_from_codes(
        subj, len(names), label, proba.argmax(1), proba, classes, per2, vspec, None, 3
    )
    assert got == want
    assert got["ci95"]["n_subjects"] == 3
    assert class_codes(y, classes).tolist() == label.tolist()
    assert roc_curves_from_codes(label, proba, classes) == roc_curves(y, proba, classes)


def test_a_batch_reads_its_own_files_in_one_task_within_the_byte_cap(table, tmp_path, client):
    """Each batch of a table read one file per recording is one task that reads its files
    (no partition fetched from another worker), and holds at most BATCH_BYTES of table."""
    from dask.utils import key_split
    from distributed import get_task_stream

    from pipeline.learn import distributed as engine

    for rec, g in table.groupby("recording", sort=True):
        g.to_parquet(tmp_path / f"{rec}.parquet")
    files = sorted(str(p) for p in tmp_path.glob("*.parquet"))
    ddf = dd.from_map(pd.read_parquet, files)  # as read_feature_table: a task a file
    nbytes = table_nbytes(files)
    want = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    batches = engine._batches(ddf.to_delayed(), nbytes)
    assert len(batches) == 5  # 10 recordings, about four tasks per worker, two workers
    with get_task_stream(client) as stream:
        got = pd.concat(dask.compute(*batches), ignore_index=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)  # dask: pyarrow strings
    assert {key_split(t["key"]) for t in stream.data} == {
        "read_batch"
    }  # key_split drops the underscore
    assert not [s for t in stream.data for s in t["startstops"] if s["action"] == "transfer"]
    # a cap of two recordings' bytes: five batches of two; of one: ten
    per = nbytes // len(files)
    for cap, n in ((2 * per + 1, 5), (per, 10)):
        old, engine.BATCH_BYTES = engine.BATCH_BYTES, cap
        try:
            assert len(engine._batches(ddf.to_delayed(), nbytes)) == n
        finally:
            engine.BATCH_BYTES = old


@pytest.mark.parametrize("name", ["lda", "random_forest"])
def test_both_engines_write_the_same_out_of_fold_predictions(table, tmp_path, client, name):
    """The distributed engine's workers write one predictions file per partition, the
    memory engine one file; same schema, same rows (a row per scored window and fold)."""
    from pipeline.learn.metrics import OOF_COLUMNS

    cfg = {"name": name, "prep": PREP, "smooth": 3, "max_train_windows": 10**6}
    if name == "random_forest":
        cfg["params"] = {"n_estimators": 5}
    val = {"scheme": "group_kfold", "n_splits": 3}
    fit_and_validate(
        table, cfg | {"engine": "memory"}, val, n_jobs=1, predictions_dir=tmp_path / "m"
    )
    _, rep = fit_and_validate(_per_recording(table), cfg, val, predictions_dir=tmp_path / "d")
    files = sorted((tmp_path / "d").glob("part-*.parquet"))
    assert len(files) > 1 and [p.name for p in (tmp_path / "m").iterdir()] == ["part-00000.parquet"]
    mem, dist = (pd.read_parquet(tmp_path / k) for k in "md")
    classes = rep["classes"]
    assert (
        list(dist.columns)
        == list(mem.columns)
        == [
            *OOF_COLUMNS,
            *(f"proba__{c}" for c in classes),
        ]
    )
    assert dist.dtypes.to_dict() == mem.dtypes.to_dict()
    key = ["recording", "start", "fold"]
    mem, dist = (f.sort_values(key, ignore_index=True) for f in (mem, dist))
    assert len(dist) == rep["overall"]["n_windows"] == table["label"].notna().sum()
    pd.testing.assert_frame_equal(dist.drop(columns=["predicted"]).iloc[:, :5], mem.iloc[:, :5])
    cols = [f"proba__{c}" for c in classes]
    assert np.allclose(dist[cols].sum(1), 1.0)
    assert (dist["predicted"] == dist[cols].idxmax(1).str.removeprefix("proba__")).all()
    if name == "lda":  # the forests are fitted on differently ordered data: not equal
        np.testing.assert_allclose(dist[cols].to_numpy(), mem[cols].to_numpy(), atol=1e-9)
        assert (dist["predicted"] == mem["predicted"]).all()
    fold_of = {s: i for i, f in enumerate(rep["folds"]) for s in f["test_subjects"]}
    assert (dist["fold"] == dist["subject"].map(fold_of)).all()
