"""The Dask paths: parallel folds on a LocalCluster and out-of-core fitting with dask-ml."""

import itertools

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from pipeline.exceptions import LeakageError, SpecError
from pipeline.learn import fit_and_validate, predict_table
from pipeline.learn.bundle import bundle_metadata, load_bundle, save_bundle
from pipeline.learn.synthetic import synthetic_feature_table

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def table():
    return synthetic_feature_table(n_subjects=4, n_runs=2, subject_gain=1.0, seed=11)


def test_folds_run_on_the_cluster_and_match_local(client, table):
    cfg = {"name": "lda", "prep": {"normalize": "recording"}}
    _, on_cluster = fit_and_validate(table, cfg, {"scheme": "loso"}, seed=0)
    assert on_cluster["timing"]["backend"] == "dask"
    _, local = fit_and_validate(table, cfg, {"scheme": "loso"}, seed=0, n_jobs=1, backend="local")
    assert local["timing"]["backend"] == "loky"
    assert on_cluster["overall"] == local["overall"]
    assert on_cluster["per_subject"] == local["per_subject"]


def test_out_of_core_fit_validate_and_predict(client, table, tmp_path):
    ddf = dd.from_pandas(table, npartitions=5)
    cfg = {
        "name": "sgd",
        "params": {"alpha": 1e-3},
        "prep": {"log": ["mav"], "normalize": "recording"},
    }
    model, report = fit_and_validate(ddf, cfg, {"scheme": "group_kfold", "n_splits": 2}, seed=0)
    assert report["out_of_core"] is True and len(report["folds"]) == 2
    assert report["n_labeled_windows"] == int(table.label.notna().sum())
    for f in report["folds"]:
        assert set(f["test_subjects"]).isdisjoint(f["train_subjects"])
    # Per-recording normalisation makes the subject gains vanish: clearly above chance.
    assert report["overall"]["balanced_accuracy"] > 0.7
    # Lazy prediction per recording equals the in-memory prediction of the same model.
    lazy = predict_table(model, ddf)
    assert isinstance(lazy, dd.DataFrame)
    got = lazy.compute().sort_values(["recording", "start"]).reset_index(drop=True)
    exp = predict_table(model, table).sort_values(["recording", "start"]).reset_index(drop=True)
    # dask stores the label column as a string dtype (<NA> for None): compare values.
    np.testing.assert_array_equal(got.label.isna(), exp.label.isna())
    lab = exp.label.notna().to_numpy()
    np.testing.assert_array_equal(got.label[lab].astype(str), exp.label[lab].astype(str))
    pd.testing.assert_frame_equal(
        got.drop(columns="label"), exp.drop(columns="label"), check_dtype=False
    )
    # The out-of-core model is plain scikit-learn: it bundles and reloads.
    bundle = load_bundle(save_bundle(tmp_path / "sgd.skops", model, bundle_metadata(model, report)))
    np.testing.assert_array_equal(predict_table(bundle, table).prediction, exp.prediction)


def test_out_of_core_writes_the_out_of_fold_predictions(client, table, tmp_path):
    from sklearn.metrics import balanced_accuracy_score

    from pipeline.learn.metrics import OOF_COLUMNS

    ddf = dd.from_pandas(table, npartitions=5)
    cfg = {"name": "sgd", "params": {"alpha": 1e-3}, "prep": {"normalize": "recording"}}
    vcfg = {"scheme": "group_kfold", "n_splits": 2}
    _, report = fit_and_validate(ddf, cfg, vcfg, seed=0, predictions_dir=tmp_path / "oof")
    files = sorted((tmp_path / "oof").glob("part-*.parquet"))
    assert len(files) > 1  # one per prepared partition of each fold, not one from the client
    oof = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    classes = report["classes"]
    assert list(oof.columns) == [*OOF_COLUMNS, *(f"proba__{c}" for c in classes)]
    # every labeled window once, scored by the fold that held its subject out
    assert len(oof) == report["n_labeled_windows"] == int(table.label.notna().sum())
    assert not oof.duplicated(["recording", "start"]).any()
    for i, f in enumerate(report["folds"]):
        assert set(oof.subject[oof.fold == i]) == set(f["test_subjects"])
    # the files hold the probabilities the report's metrics came from
    assert balanced_accuracy_score(oof.true, oof.predicted) == pytest.approx(
        report["overall"]["balanced_accuracy"], abs=1e-12
    )
    proba = oof[[f"proba__{c}" for c in classes]].to_numpy()
    np.testing.assert_array_equal(np.asarray(classes)[proba.argmax(1)], oof.predicted)


def test_out_of_core_refusals(client, table):
    ddf = dd.from_pandas(table, npartitions=2)
    with pytest.raises(
        SpecError,
        match=r"model.name 'logreg' with model.engine 'distributed': expected one of "
        r"\['lda', 'gaussian_nb', 'sgd', 'random_forest', 'gradient_boosting', 'soft_vote'\]",
    ):
        fit_and_validate(ddf, {"name": "logreg"}, {"scheme": "loso"})
    with pytest.raises(LeakageError, match="allow_window_leakage"):
        fit_and_validate(ddf, {"name": "sgd"}, {"scheme": "random"})


@pytest.mark.parametrize("loss", ["log_loss", "hinge"])
def test_sgd_out_of_core_equals_sklearn_partial_fit_on_the_same_blocks(client, table, loss):
    # logistic regression (log_loss) and a linear SVM (hinge) by SGD: the out-of-core fit is
    # scikit-learn's partial_fit over the table's blocks, in the order the seed shuffles
    from sklearn.utils import check_random_state

    from pipeline.learn.estimators import make_classifier, model_spec
    from pipeline.learn.outofcore import _prepare, fit_incremental

    cfg = {
        "name": "sgd",
        "params": {"loss": loss, "alpha": 1e-3},
        "prep": {"log": ["mav"], "normalize": "recording"},
    }
    classes = sorted(table["label"].dropna().unique())
    ddf = dd.from_pandas(table, npartitions=4)
    model = fit_incremental(ddf, cfg, 7, classes)
    prepared = _prepare(ddf, model.model["prep"])
    blocks = [prepared.get_partition(i).compute() for i in range(prepared.npartitions)]
    blocks = [b[b["label"].notna()] for b in blocks]
    blocks = [b for b in blocks if len(b)]
    assert len(blocks) > 1
    order = list(range(len(blocks)))
    check_random_state(7).shuffle(order)
    counts = table["label"].value_counts()
    weights = {str(c): len(table["label"].dropna()) / (len(counts) * k) for c, k in counts.items()}
    ref = make_classifier(model_spec(cfg), 7).set_params(class_weight=weights)
    cols = model.feature_names
    for i in order:
        X = model.model["scale"].transform(blocks[i][cols].to_numpy())
        ref.partial_fit(X, blocks[i]["label"].astype(str).to_numpy(), classes=np.array(classes))
    np.testing.assert_array_equal(model.model[-1].coef_, ref.coef_)
    np.testing.assert_array_equal(model.model[-1].intercept_, ref.intercept_)


def test_out_of_core_folds_are_fitted_concurrently(client, table):
    ddf = dd.from_pandas(table, npartitions=4)
    cfg = {"name": "sgd", "params": {"loss": "log_loss"}, "prep": {"normalize": "recording"}}
    with distributed.get_task_stream(client) as ts:
        _, report = fit_and_validate(ddf, cfg, {"scheme": "loso"}, seed=0)
    # one partial_fit chain per fold plus the final model's (keys ("fit-<token>", block))
    spans: dict[str, list[float]] = {}
    for t in ts.data:
        if isinstance(t["key"], tuple) and str(t["key"][0]).startswith("fit-"):
            for ss in t["startstops"]:
                span = spans.setdefault(t["key"][0], [ss["start"], ss["stop"]])
                span[0], span[1] = min(span[0], ss["start"]), max(span[1], ss["stop"])
    assert len(spans) == len(report["folds"]) + 1 == table["subject"].nunique() + 1
    # computed together: some chain starts before another one has finished
    ordered = sorted(spans.values())
    assert any(b[0] < a[1] for a, b in itertools.pairwise(ordered))
    assert report["timing"]["concurrent_fits_s"] > 0
