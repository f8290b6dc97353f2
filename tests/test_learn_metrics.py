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
