"""Metrics against scikit-learn and hand-computed cases."""

import numpy as np
import pytest
from sklearn import metrics as skm

from pipeline.exceptions import SpecError
from pipeline.learn.metrics import (
    classification_metrics,
    per_subject_metrics,
    sensitivity_specificity,
    threshold_at_specificity,
)

SUMMARY = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")


def test_hand_computed_binary_case():
    y = ["a", "a", "a", "b", "b"]
    p = ["a", "b", "a", "b", "a"]
    m = classification_metrics(y, p, None, ["a", "b"])
    assert m["confusion_matrix"] == [[2, 1], [1, 1]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    # sensitivity of a = 2/3, of b = 1/2; specificity of a = TN/(TN+FP) = 1/2
    assert m["per_class"]["a"] == {
        "sensitivity": pytest.approx(2 / 3),
        "specificity": 0.5,
        "support": 3,
    }
    assert m["per_class"]["b"]["specificity"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["roc_auc"] is None


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(0)
    classes = ["x", "y", "z"]
    y = rng.choice(classes, size=300)
    logits = rng.normal(size=(300, 3)) + 1.5 * (y[:, None] == np.array(classes))
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = np.array(classes)[proba.argmax(1)]
    m = classification_metrics(y, pred, proba, classes)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)
    )
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=classes).tolist()
    rec = skm.recall_score(y, pred, average=None, labels=classes)
    for i, c in enumerate(classes):
        assert m["per_class"][c]["sensitivity"] == pytest.approx(rec[i])
        spec = skm.recall_score(y != c, pred != c)  # specificity = recall of the negatives
        assert m["per_class"][c]["specificity"] == pytest.approx(spec)


def test_binary_auc_uses_second_class_as_positive():
    y = np.array(["rest", "task", "task", "rest", "task"])
    score = np.array([0.1, 0.8, 0.4, 0.5, 0.9])
    proba = np.c_[1 - score, score]
    m = classification_metrics(y, np.where(score > 0.5, "task", "rest"), proba, ["rest", "task"])
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y == "task", score))


def test_absent_class_is_left_out_of_balanced_accuracy_and_auc():
    classes = ["a", "b", "c"]
    y = np.array(["a", "a", "b", "b"])
    pred = np.array(["a", "c", "b", "b"])
    proba = np.array([[0.8, 0.1, 0.1], [0.3, 0.2, 0.5], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    m = classification_metrics(y, pred, proba, classes)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["per_class"]["c"]["sensitivity"] is None
    auc_a = skm.roc_auc_score(y == "a", proba[:, 0])
    auc_b = skm.roc_auc_score(y == "b", proba[:, 1])
    assert m["roc_auc"] == pytest.approx((auc_a + auc_b) / 2)


def test_sensitivity_specificity_of_a_confusion_matrix():
    cm = np.array([[5, 1, 0], [2, 6, 2], [0, 0, 4]])
    sens, spec = sensitivity_specificity(cm)
    np.testing.assert_allclose(sens, [5 / 6, 6 / 10, 4 / 4])
    # class 0: TN = 20 - 5 - 1 - 2 = 12, FP = 2; class 2: TN = 20 - 4 - 0 - 2 = 14
    np.testing.assert_allclose(spec, [12 / 14, 9 / 10, 14 / 16])


def test_per_subject_summary():
    subjects = np.array(["s1"] * 4 + ["s2"] * 4 + ["s3"] * 4)
    y = np.array(["a", "a", "b", "b"] * 3)
    pred = np.array(["a", "a", "b", "b", "a", "b", "b", "b", "b", "b", "b", "b"])
    per, summary = per_subject_metrics(subjects, y, pred, None, ["a", "b"])
    assert [per[s]["accuracy"] for s in ("s1", "s2", "s3")] == [1.0, 0.75, 0.5]
    assert summary["accuracy"] == {
        "min": 0.5,
        "median": 0.75,
        "max": 1.0,
        "mean": 0.75,
        "worst_subject": "s3",
    }
    assert summary["roc_auc"]["median"] is None


def test_threshold_at_specificity_hand_case():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    s = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.55, 0.6, 0.7, 0.9, 0.65, 0.8, 0.95, 0.3])
    r = threshold_at_specificity(y, s, 0.9)
    # score >= 0.8 -> FP only 0.9 (spec 0.9); positives 0.8, 0.95 caught: sens 0.5.
    assert r["threshold"] == pytest.approx(0.8)
    assert r["sensitivity"] == pytest.approx(0.5)
    assert r["specificity"] == pytest.approx(0.9)
    pred = s >= r["threshold"]
    assert (~pred[~y]).mean() >= 0.9 and pred[y].mean() == r["sensitivity"]
    assert threshold_at_specificity(y, s, 0.8)["sensitivity"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("y", "spec", "match"),
    [
        ([True, False], 0.0, r"specificity must be in \(0, 1\], got 0.0"),
        ([True, True], 0.9, r"needs both positive and negative"),
    ],
)
def test_threshold_errors(y, spec, match):
    with pytest.raises(SpecError, match=match):
        threshold_at_specificity(y, [0.2, 0.4], spec)


def test_empty_input_is_an_error():
    with pytest.raises(SpecError, match="no window to score"):
        classification_metrics([], [], None, ["a"])


# --- baselines, calibration, bootstrap intervals, inverted subjects (issue 13 item 5) ---


def test_baselines_are_the_majority_and_chance_scores():
    from pipeline.learn.metrics import baseline_scores

    y = ["a"] * 6 + ["b"] * 3 + ["c"] * 1
    out = baseline_scores(y, ["a", "b", "c"])
    assert out["majority_class"] == "a"
    assert out["majority"]["accuracy"] == pytest.approx(0.6, abs=1e-15)
    assert out["majority"]["balanced_accuracy"] == pytest.approx(1 / 3, abs=1e-15)
    # F1 of "a": precision 0.6, recall 1 -> 0.75; the others 0
    assert out["majority"]["f1_macro"] == pytest.approx(0.25, abs=1e-15)
    assert out["majority"]["roc_auc"] == 0.5
    assert out["chance"]["accuracy"] == pytest.approx(0.36 + 0.09 + 0.01, abs=1e-15)
    assert out["chance"]["balanced_accuracy"] == pytest.approx(1 / 3, abs=1e-15)


def test_brier_and_ece_agree_with_sklearn_and_a_hand_computation():
    from sklearn.metrics import brier_score_loss

    from pipeline.learn.metrics import calibration_metrics

    rng = np.random.default_rng(3)
    p1 = rng.uniform(size=200)
    y = np.where(rng.uniform(size=200) < p1, "pos", "neg")
    proba = np.column_stack([1 - p1, p1])
    cal = calibration_metrics(y, proba, ["neg", "pos"], n_bins=10)
    assert cal["brier"] == pytest.approx(brier_score_loss(y == "pos", p1), abs=1e-15)
    conf = proba.max(1)
    correct = np.where(p1 >= 0.5, "pos", "neg") == y
    ece = 0.0
    for b in range(10):  # bins (b/10, (b+1)/10], top-label confidence
        m = (conf > b / 10) & (conf <= (b + 1) / 10)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    assert cal["ece"] == pytest.approx(ece, abs=1e-12)
    assert sum(b["n"] for b in cal["reliability"]) == 200
    # three classes, by hand: mean over windows of sum_k (p_k - y_k)^2
    p3 = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]])
    y3 = ["a", "b", "a"]
    hand = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2) + (0.5**2 + 0.5**2)) / 3
    cal3 = calibration_metrics(y3, p3, ["a", "b", "c"], n_bins=10)
    assert cal3["brier"] == pytest.approx(hand, abs=1e-12)
    # confidences 0.7 (right), 0.8 (wrong), 0.5 (right: argmax ties to "a")
    assert cal3["ece"] == pytest.approx((abs(1 - 0.7) + abs(0 - 0.8) + abs(1 - 0.5)) / 3)


def test_calibration_refuses_a_mismatched_shape():
    from pipeline.learn.metrics import calibration_metrics

    with pytest.raises(SpecError, match=r"proba expected shape \(2, 2\), found \(2, 3\)"):
        calibration_metrics(["a", "b"], np.ones((2, 3)) / 3, ["a", "b"])


@pytest.mark.parametrize("k", [2, 3])
def test_bootstrap_ci_equals_a_hand_computed_subject_bootstrap(k):
    from pipeline.learn.metrics import bootstrap_ci

    rng = np.random.default_rng(11)
    classes = [f"c{i}" for i in range(k)]
    n_subj, n_per = 7, 30
    subjects = np.repeat([f"s{i}" for i in range(n_subj)], n_per)
    y = rng.choice(classes, size=len(subjects))
    raw = rng.uniform(size=(len(subjects), k)) + 0.8 * (y[:, None] == np.array(classes))
    proba = np.round(raw / raw.sum(1, keepdims=True), 2)  # rounding makes ties
    pred = np.asarray(classes, dtype=object)[proba.argmax(1)]
    got = bootstrap_ci(subjects, y, pred, proba, classes, n_boot=200, seed=5)
    names = np.unique(subjects)
    draws = np.random.default_rng(5).integers(0, n_subj, size=(200, n_subj))
    vals: dict[str, list[float]] = {m: [] for m in SUMMARY}
    for d in draws:
        rows = np.concatenate([np.flatnonzero(subjects == names[i]) for i in d])
        m = classification_metrics(y[rows], pred[rows], proba[rows], classes)
        for name in SUMMARY:
            vals[name].append(m[name])
    for name in SUMMARY:
        v = np.array(vals[name], dtype=float)
        assert got[name]["low"] == pytest.approx(np.quantile(v, 0.025), abs=1e-12), name
        assert got[name]["high"] == pytest.approx(np.quantile(v, 0.975), abs=1e-12), name
    assert got["n_subjects"] == n_subj and got["unit"] == "subject"


def test_a_subject_predicted_the_wrong_way_round_is_flagged_inverted():
    from pipeline.learn.metrics import inverted_subjects, per_subject_metrics

    rng = np.random.default_rng(0)
    subjects = np.repeat(["good", "flipped"], 40)
    y = np.tile(np.repeat(["rest", "task"], 20), 2)
    p_task = np.clip((y == "task") * 0.6 + rng.uniform(0, 0.4, size=80), 0, 1)
    flipped = subjects == "flipped"
    p_task[flipped] = 1 - p_task[flipped]
    proba = np.column_stack([1 - p_task, p_task])
    pred = np.where(p_task >= 0.5, "task", "rest")
    per, _ = per_subject_metrics(subjects, y, pred, proba, ["rest", "task"])
    inv = inverted_subjects(per)
    assert list(inv) == ["flipped"]
    assert inv["flipped"]["roc_auc"] == pytest.approx(0.0)
    assert inv["flipped"]["reasons"] == [
        "balanced accuracy 0.000 < chance 0.500",
        "ROC AUC 0.000 < 0.5",
    ]


def test_rank_auc_and_pair_rank_sums_equal_sklearn_with_ties():
    from pipeline.learn.metrics import binary_auc, pair_rank_sums

    rng = np.random.default_rng(3)
    pos = rng.uniform(size=500) < 0.4
    score = np.round(rng.uniform(size=500) + 0.3 * pos, 1)  # one decimal: many ties
    assert binary_auc(pos, score) == pytest.approx(skm.roc_auc_score(pos, score), abs=1e-12)
    subject = rng.integers(0, 4, size=500)
    U = pair_rank_sums(subject, pos, score, 4)
    # the subjects' pairwise counts add up to the pooled Mann-Whitney count
    assert U.sum() / (pos.sum() * (~pos).sum()) == pytest.approx(binary_auc(pos, score), abs=1e-12)
    s0 = subject == 0
    assert U[0, 0] / (pos[s0].sum() * (~pos[s0]).sum()) == pytest.approx(
        skm.roc_auc_score(pos[s0], score[s0]), abs=1e-12
    )


def test_a_label_outside_the_classes_is_scored_as_scikit_learn_scores_it():
    y = np.array(["a", "b", "z", "a"])
    pred = np.array(["a", "b", "a", "b"])
    m = classification_metrics(y, pred, None, ["a", "b"])
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=["a", "b"]).tolist()
    assert m["accuracy"] == skm.accuracy_score(y, pred) and m["n_windows"] == 4
