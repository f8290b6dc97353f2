"""Model bundle: skops round trip, allow-list, tampering, compatibility checks."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from threadpoolctl import threadpool_limits

from pipeline.exceptions import BundleError
from pipeline.learn.bundle import Bundle, bundle_metadata, load_bundle, save_bundle
from pipeline.learn.fit import fit_and_validate, fit_model
from pipeline.learn.model import predict_table
from pipeline.learn.synthetic import synthetic_feature_table

ATTRS = {"channels": ["ch0", "ch1", "ch2"], "sampling_rate": 1000.0, "units": "V"}


@pytest.fixture(scope="module")
def table():
    return synthetic_feature_table(n_subjects=3, n_runs=1, seed=5)


@pytest.fixture(scope="module")
def fitted(table):
    cfg = {"name": "lda", "prep": {"log": ["mav"], "normalize": "recording"}, "smooth": 3}
    model, report = fit_and_validate(table, cfg, {"scheme": "loso"}, seed=1, n_jobs=1)
    return model, report


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "lda", "prep": {"normalize": "recording"}},
        {"name": "gradient_boosting", "params": {"max_iter": 15}},
        {
            "name": "soft_vote",
            "estimators": [
                {"name": "lda"},
                {"name": "logreg"},
                {"name": "random_forest", "params": {"n_estimators": 8}},
            ],
            "prep": {"log": ["mav"], "context": 2},
        },
    ],
)
def test_predictions_after_save_and_load_equal_before(tmp_path, table, cfg):
    with threadpool_limits(limits=1):  # OpenMP gradient boosting crawls on a busy machine
        model = fit_model(table, cfg, seed=0)
    before = predict_table(model, table)
    path = save_bundle(tmp_path / "m.skops", model, bundle_metadata(model, **ATTRS))
    bundle = load_bundle(path)
    after = predict_table(bundle, table)
    pd.testing.assert_frame_equal(before, after)
    assert list(after.columns[-3:]) == ["proba__c0", "proba__c1", "proba__c2"]
    np.testing.assert_allclose(after.filter(like="proba__").sum(axis=1), 1.0)


def test_metadata_round_trip(tmp_path, fitted, table):
    model, report = fitted
    meta = bundle_metadata(
        model,
        report,
        task={"name": "synthetic"},
        window_plan={"length_s": 0.2, "step_s": 0.05},
        feature_specs=[{"name": "mav"}, {"name": "zc"}],
        store_fingerprint="abc123",
        **ATTRS,
    )
    bundle = load_bundle(save_bundle(tmp_path / "b.skops", model, meta))
    md = bundle.metadata
    assert md["classes"] == ["c0", "c1", "c2"]
    assert md["label_mapping"] == {"c0": 0, "c1": 1, "c2": 2}
    assert md["training_subjects"] == ["sub-00", "sub-01", "sub-02"]
    assert md["seed"] == 1
    assert md["prep"]["normalize"] == "recording" and md["smooth"] == 3
    assert (
        md["validation"]["overall"]["balanced_accuracy"] == report["overall"]["balanced_accuracy"]
    )
    assert md["versions"]["scikit-learn"]
    assert md["window_plan"] == {"length_s": 0.2, "step_s": 0.05}
    assert md["feature_names"] == model.feature_names
    assert bundle.predict(table).equals(predict_table(model, table))


def test_save_is_atomic_and_leaves_no_temporary(tmp_path, fitted):
    model, _ = fitted
    save_bundle(tmp_path / "x.skops", model, bundle_metadata(model))
    save_bundle(tmp_path / "x.skops", model, bundle_metadata(model))  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.skops"]


def test_save_refuses_incomplete_metadata(tmp_path, fitted):
    model, _ = fitted
    with pytest.raises(BundleError, match=r"metadata lacks keys \['classes', 'prep', 'smooth'\]"):
        save_bundle(tmp_path / "y.skops", model, {"feature_names": model.feature_names})
    with pytest.raises(BundleError, match="not JSON-serialisable"):
        save_bundle(tmp_path / "y.skops", model, bundle_metadata(model) | {"task": object()})
    assert not (tmp_path / "y.skops").exists()


def _rewrite_schema(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "schema.json":
                data = json.dumps(edit(json.loads(data))).encode()
            zout.writestr(item, data)


def test_unknown_type_in_file_is_refused(tmp_path, fitted):
    model, _ = fitted
    good = save_bundle(tmp_path / "g.skops", model, bundle_metadata(model))

    def inject(schema):
        # Make the payload's model claim to be os.system: a classic pickle-style attack.
        node = schema["content"]["model"]
        node["__module__"], node["__class__"] = "os", "system"
        return schema

    bad = tmp_path / "bad.skops"
    _rewrite_schema(good, bad, inject)
    with pytest.raises(
        BundleError, match=r"holds types this package does not produce: \['os.system'\]"
    ):
        load_bundle(bad)


def test_tampered_metadata_is_detected(tmp_path, fitted):
    model, _ = fitted
    good = save_bundle(tmp_path / "g.skops", model, bundle_metadata(model, **ATTRS))

    def edit(schema):
        node = schema["content"]["metadata_json"]
        assert "1000.0" in node["content"]
        node["content"] = node["content"].replace("1000.0", "250.0")
        return schema

    bad = tmp_path / "t.skops"
    _rewrite_schema(good, bad, edit)
    with pytest.raises(
        BundleError, match=r"t\.skops' does not match its digest \(changed \['schema\.json'\]\)"
    ):
        load_bundle(bad)


def _find(node, key):
    """Return the schema node stored under ``key`` anywhere in a skops schema."""
    if isinstance(node, dict):
        if key in node:
            return node[key]
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = _find(child, key)
            if found is not None:
                return found
    return None


def _swap_coef_rows(src, dst, *, redigest=False):
    """Copy a bundle, swapping rows 0 and 1 of the classifier's ``coef_`` (a weights file)."""
    import io

    from pipeline._fs import canonical_json, sha256_text
    from pipeline.learn.bundle import INTEGRITY_MEMBER

    with zipfile.ZipFile(src) as zin:
        member = _find(json.loads(zin.read("schema.json")), "coef_")["file"]
        items = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    coef = np.load(io.BytesIO(items[member]))
    swapped = coef.copy()
    swapped[[0, 1]] = coef[[1, 0]]
    buf = io.BytesIO()
    np.save(buf, swapped)
    items[member] = buf.getvalue()
    if redigest:  # what someone who knows the format but not the key would do
        import hashlib

        record = json.loads(items[INTEGRITY_MEMBER])
        record["members"][member] = hashlib.sha256(items[member]).hexdigest()
        record["sha256"] = sha256_text(canonical_json(record["members"]))
        items[INTEGRITY_MEMBER] = canonical_json(record).encode()
    with zipfile.ZipFile(dst, "w") as zout:
        for name, data in items.items():
            zout.writestr(name, data)
    return member, coef


def test_tampered_weights_are_refused(tmp_path, fitted, table):
    model, _ = fitted
    good = save_bundle(tmp_path / "g.skops", model, bundle_metadata(model))
    bad = tmp_path / "w.skops"
    member, coef = _swap_coef_rows(good, bad)
    assert not np.array_equal(coef[0], coef[1])  # the swap changes the model
    with pytest.raises(
        BundleError,
        match=rf"w\.skops' does not match its digest \(changed \['{member}'\]\): the file "
        r"was modified after it was saved \(weights, metadata or structure\); refusing",
    ):
        load_bundle(bad)
    load_bundle(good)  # the original still loads


def test_keyed_signature(tmp_path, fitted, monkeypatch):
    model, _ = fitted
    unsigned = save_bundle(tmp_path / "u.skops", model, bundle_metadata(model))
    monkeypatch.setenv("COHORT_BUNDLE_KEY", "site secret")
    signed = save_bundle(tmp_path / "s.skops", model, bundle_metadata(model))
    assert load_bundle(signed).classes == model.classes
    with pytest.raises(BundleError, match=r"u\.skops' is not signed: COHORT_BUNDLE_KEY is set"):
        load_bundle(unsigned)
    # weights edited and every digest recomputed: only the key's HMAC still tells
    forged = tmp_path / "f.skops"
    _swap_coef_rows(signed, forged, redigest=True)
    with pytest.raises(BundleError, match=r"f\.skops' is signed with another key"):
        load_bundle(forged)
    monkeypatch.setenv("COHORT_BUNDLE_KEY", "another secret")
    with pytest.raises(BundleError, match=r"s\.skops' is signed with another key"):
        load_bundle(signed)
    monkeypatch.delenv("COHORT_BUNDLE_KEY")
    assert load_bundle(signed).classes == model.classes  # without a key: the digest only


def test_bundle_without_integrity_member_is_refused(tmp_path, fitted):
    model, _ = fitted
    good = save_bundle(tmp_path / "g.skops", model, bundle_metadata(model))
    old = tmp_path / "old.skops"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(old, "w") as zout:
        for item in zin.infolist():
            if item.filename != "cohort-integrity.json":
                zout.writestr(item, zin.read(item.filename))
    with pytest.raises(BundleError, match=r"old\.skops' has no valid cohort-integrity\.json"):
        load_bundle(old)


def test_corrupt_or_missing_file(tmp_path):
    junk = tmp_path / "junk.skops"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(BundleError, match=r"junk.skops' is not a readable skops file \(BadZipFile"):
        load_bundle(junk)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope.skops")


def test_check_compatible_names_the_difference(fitted):
    model, _ = fitted
    b = Bundle(model, bundle_metadata(model, **ATTRS))
    b.check_compatible(ATTRS | {"units": ["V", "V", "V"]})
    with pytest.raises(BundleError, match=r"sampling_rate: bundle expects 1000.0 Hz, got 500"):
        b.check_compatible(ATTRS | {"sampling_rate": 500, "recording": "sub-09"})
    with pytest.raises(
        BundleError, match=r"sub-09 does not match .*missing \['ch2'\], unexpected \['ch9'\]"
    ):
        b.check_compatible(ATTRS | {"channels": ["ch0", "ch1", "ch9"], "recording": "sub-09"})
    with pytest.raises(BundleError, match=r"order differs"):
        b.check_compatible(ATTRS | {"channels": ["ch1", "ch0", "ch2"]})
    with pytest.raises(BundleError, match=r"units: bundle expects 'V', got 'uV'"):
        b.check_compatible(ATTRS | {"units": "uV"})


def test_predict_refuses_tables_without_the_features(fitted, table):
    model, _ = fitted
    with pytest.raises(BundleError, match=r"lacks 3 feature columns .*'ch0__zc'"):
        predict_table(model, table.drop(columns=["ch0__zc", "ch1__zc", "ch2__zc"]))


def test_bundle_file_holds_a_plain_sklearn_pipeline(tmp_path, fitted, table):
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    from pipeline.learn.bundle import ALLOWED_TYPES

    model, _ = fitted
    path = save_bundle(tmp_path / "p.skops", model, bundle_metadata(model))
    untrusted = set(sio.get_untrusted_types(file=path))
    assert untrusted <= ALLOWED_TYPES
    assert [t for t in untrusted if t.startswith("pipeline.")] == [
        "pipeline.learn.prep.FeaturePrep"
    ]
    loaded = load_bundle(path).model
    assert type(loaded) is Pipeline and list(loaded.named_steps) == ["prep", "scale", "clf"]
    # the bare Pipeline predicts like the model (smoothing aside: it lives in the metadata)
    np.testing.assert_array_equal(loaded.predict_proba(table), model.model.predict_proba(table))


class OtherLDA(LinearDiscriminantAnalysis):
    """A classifier from outside this package: bundles must not hold it."""


def test_save_refuses_a_type_load_would_refuse(tmp_path, table):
    model = fit_model(table, {"name": "lda"})
    model.model.steps[-1] = ("clf", OtherLDA(solver="lsqr"))
    labeled = table[table.label.notna()]
    model.model.fit(labeled, labeled.label.astype(str))
    with pytest.raises(BundleError, match=r"holds types \['[\w.]*OtherLDA'\] that load_bundle"):
        save_bundle(tmp_path / "other.skops", model, bundle_metadata(model))
    assert not (tmp_path / "other.skops").exists()


def test_predict_refuses_a_bare_pipeline(fitted, table):
    model, _ = fitted
    with pytest.raises(BundleError, match=r"expected a Bundle .* got Pipeline"):
        predict_table(model.model, table)
