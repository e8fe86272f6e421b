"""`partimento evaluate` writes test-split figures, next to baselines, into model.json."""

import json
import shutil

import pytest

from support.cli import partimento

pytestmark = pytest.mark.slow


def test_evaluate_live_model_writes_figures(tiny_live_model, tmp_path):
    d = tmp_path / "bach-tiny"
    shutil.copytree(tiny_live_model, d)
    r = partimento("evaluate", d)
    assert r.returncode == 0, r.stderr
    ev = json.loads((d / "model.json").read_text())["evaluation"]
    assert ev["split"] == "test" and ev["pieces"] >= 1
    assert set(ev["nll_per_token"]) == {"alto", "tenor", "bass", "mean"}
    assert all(0 <= a <= 1 for a in ev["accuracy"].values())
    assert set(ev["baseline_ngram"]) == {"alto", "tenor", "bass"}
    harm = ev["harmonization"]
    assert set(harm) >= {"live", "bach", "rules", "settings"}
    for who in ("live", "bach", "rules"):
        assert 0 <= harm[who]["triad_seventh_share"] <= 1
        assert harm[who]["parallels_per_100"] >= 0
    assert 0 <= harm["live"]["pitch_class_agreement_with_bach"] <= 1
    # Bach's own chorales are mostly triads and sevenths; the figure is measured, not assumed
    assert harm["bach"]["triad_seventh_share"] > 0.6


def test_evaluate_unknown_model_is_one_line():
    r = partimento("evaluate", "no-such-model")
    assert r.returncode == 1 and "no model 'no-such-model'" in r.stderr
