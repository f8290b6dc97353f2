"""fit_and_validate / predict_table on synthetic tables, and the report files."""

import base64
import json
import re

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from pipeline.exceptions import SpecError
from pipeline.learn import fit_and_validate, fit_model, predict_table
from pipeline.learn.report import render_html, write_report
from pipeline.learn.synthetic import synthetic_feature_table


@pytest.fixture(scope="module")
def table():
    # Strong per-subject gains: the case per-recording normalisation is meant for.
    return synthetic_feature_table(n_subjects=5, n_runs=2, subject_gain=1.2, seed=7)


@pytest.fixture(scope="module")
def loso(table):
    cfg = {"name": "lda", "prep": {"log": ["mav"], "normalize": "recording"}}
    return fit_and_validate(table, cfg, {"scheme": "loso"}, seed=0, n_jobs=1)


def test_report_pools_out_of_fold_predictions(table, loso):
    _, report = loso
    assert report["classes"] == ["c0", "c1", "c2"]
    assert report["n_labeled_windows"] == int(table.label.notna().sum())
    assert report["overall"]["n_windows"] == report["n_labeled_windows"]  # each tested once
    assert len(report["folds"]) == 5 and report["seed"] == 0
    for f in report["folds"]:
        assert set(f["test_subjects"]).isdisjoint(f["train_subjects"])
    assert set(report["per_subject"]) == {f"sub-0{i}" for i in range(5)}
    s = report["per_subject_summary"]["balanced_accuracy"]
    vals = [d["balanced_accuracy"] for d in report["per_subject"].values()]
    assert s["min"] == min(vals) and s["median"] == pytest.approx(np.median(vals))
    json.dumps(report)  # JSON-ready throughout


def test_fold_metrics_equal_an_independent_refit(table, loso):
    """Recompute fold 'test=sub-02' by hand with scikit-learn and compare."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, report = loso
    cols = [c for c in table.columns if "__" in c]
    X = table[cols].copy()
    mav = [c for c in cols if c.endswith("__mav")]
    X[mav] = np.log(X[mav] + 1e-12)
    g = X.groupby(table.recording)
    X = (X - g.transform("mean")) / (g.transform("std", ddof=0) + 1e-12)
    lab = table.label.notna()
    tr = lab & (table.subject != "sub-02")
    te = lab & (table.subject == "sub-02")
    clf = make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(solver="lsqr"))
    clf.fit(X[tr], table.label[tr].astype(str))
    expected = balanced_accuracy_score(table.label[te].astype(str), clf.predict(X[te]))
    fold = next(f for f in report["folds"] if f["name"] == "test=sub-02")
    assert fold["metrics"]["balanced_accuracy"] == pytest.approx(expected)


def test_per_recording_normalisation_helps_across_subjects(table, loso):
    _, with_norm = loso
    _, plain = fit_and_validate(
        table, {"name": "lda", "prep": {"log": ["mav"]}}, {"scheme": "loso"}, n_jobs=1
    )
    assert with_norm["overall"]["balanced_accuracy"] > plain["overall"]["balanced_accuracy"] + 0.05


def test_final_model_predicts_every_window(table, loso):
    model, _ = loso
    out = predict_table(model, table)
    assert len(out) == len(table)
    assert list(out.columns[:6]) == ["recording", "subject", "session", "run", "start", "label"]
    proba = out[["proba__c0", "proba__c1", "proba__c2"]].to_numpy()
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert (out.prediction == np.array(["c0", "c1", "c2"])[proba.argmax(1)]).all()


def test_smoothing_is_a_causal_trailing_mean_of_probabilities(table):
    base = fit_model(table, {"name": "lda"})
    smooth = fit_model(table, {"name": "lda", "smooth": 3})
    rec = table[table.recording == "sub-01_ses-1_run-2"]
    p0 = predict_table(base, rec).filter(like="proba__").to_numpy()
    p3 = predict_table(smooth, rec).filter(like="proba__").to_numpy()
    np.testing.assert_allclose(p3[0], p0[0])
    np.testing.assert_allclose(p3[5], p0[3:6].mean(0))


def test_binary_task_reports_threshold_at_specificity():
    t = synthetic_feature_table(n_subjects=4, n_runs=1, n_classes=2, seed=3)
    t["label"] = t["label"].map({"c0": "rest", "c1": "task"})
    _, report = fit_and_validate(
        t, {"name": "logreg"}, {"scheme": "group_kfold", "n_splits": 2}, n_jobs=1, specificity=0.9
    )
    thr = report["threshold"]
    assert thr["specificity"] >= 0.9 and 0 <= thr["sensitivity"] <= 1
    assert report["overall"]["roc_auc"] is not None
    assert set(report["roc"]) == {"task"}


def test_bad_inputs(table):
    with pytest.raises(SpecError, match=r"missing identifier columns \['session'\]"):
        fit_and_validate(table.drop(columns="session"), {"name": "lda"}, {"scheme": "loso"})
    with pytest.raises(
        SpecError, match=r"key 'model.smooth': expected a value greater than or equal to 1"
    ):
        fit_and_validate(table, {"name": "lda", "smooth": 0}, {"scheme": "loso"})
    unlabeled = table.assign(label=None)
    with pytest.raises(SpecError, match="every window has label None"):
        fit_and_validate(unlabeled, {"name": "lda"}, {"scheme": "loso"})


def test_write_report_json_and_self_contained_html(tmp_path, loso):
    _, report = loso
    jpath, hpath = write_report(report, tmp_path / "out", title="synthetic LOSO")
    assert json.loads(jpath.read_text())["overall"] == report["overall"]
    page = hpath.read_text()
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 4  # confusion matrix, per subject, ROC, reliability
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<script" not in page and 'src="http' not in page and "<link" not in page
    assert "sub-04" in page and "synthetic LOSO" in page
    with pytest.raises(SpecError, match=r"report lacks keys \['overall'"):
        render_html({"classes": []})
