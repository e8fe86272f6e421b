"""``--model transformer`` for the event styles (jazz, piano): a tiny jazz transformer trains on
generated MIDI files, exports with its window parity check, is fed one token per call by
:class:`partimento.core.players.events.EventContinuer` and answers a phrase in the engine's continue
mode; every style/model combination that is not built is refused with a one-line ConfigError."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from partimento.core.music.encoding import HOLD_CODE, REST_CODE
from partimento.core.players import continuation
from partimento.files import model as models
from partimento.training.config import MODEL_TYPES, MODELS_BY_STYLE, STYLES, ConfigError, resolve

from support.project import SHIPPED, require, train_tiny
from support.songs import write_song

WINDOW = 16  # seq_len: the transformer's window (a multiple of window_stride 16)


@pytest.fixture(scope="module")
def jazz_transformer(tmp_path_factory) -> Path:
    """A jazz transformer trained for two steps on 16 generated songs and exported (the
    file names of tests/training/test_jazz_piano.py's folder, so the split has a test piece)."""
    songs = tmp_path_factory.mktemp("songs")
    rng = random.Random(3)
    for i in range(16):
        sub = songs / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        write_song(sub / f"song{i:02d}.mid", rng)
    return train_tiny(
        tmp_path_factory.mktemp("jazz-transformer"),
        "jazz",
        model="transformer",
        seq_len=WINDOW,
        embed_dim=16,
        num_heads=2,
        ff_dim=16,
        data_dir=str(songs),
        grid_step=2,  # the eighth grid, as the original jazz project reads
    )


def test_a_jazz_transformer_exports_checked_and_is_fed_one_token_per_call(jazz_transformer):
    m = models.load(jazz_transformer)
    c = m.contract
    assert c.training["config"]["model"] == "transformer"
    assert c.encoding["type"] == "events" and c.encoding["mode"] == "numeric"
    assert c.encoding["step"] == 2
    assert c.training["parity_max_logit_difference"] <= 1e-4
    assert c.input("token").shape == ("batch", 1)
    assert {i.name: i.shape for i, _ in c.states} == {
        "window_in": ("batch", WINDOW - 1),
        "phase_in": ("batch", 1),
    }
    widths = []

    def run(feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        widths.append(feeds["token"].shape)
        return m.run(feeds, outputs)

    player = continuation.make(c, run, temperature=1.0, seed=1)
    player.observe([67, HOLD_CODE, 69, HOLD_CODE, 70, HOLD_CODE, REST_CODE, REST_CODE] * 3)
    notes = player.continue_notes(32)
    assert notes and all(0 <= n.start < 32 and n.end <= 32 for n in notes)
    assert all(n.start % 2 == 0 for n in notes)  # on the eighth grid
    assert len(widths) > WINDOW and set(widths) == {(1, 1)}  # the window filled and slid
    again = continuation.make(c, m.run, temperature=1.0, seed=1)
    again.observe([67, HOLD_CODE, 69, HOLD_CODE, 70, HOLD_CODE, REST_CODE, REST_CODE] * 3)
    assert again.continue_notes(32) == notes, "the same seed answers the same"


def test_a_jazz_transformer_answers_in_the_engines_continue_mode(jazz_transformer):
    from support import engine as te

    require((SHIPPED / "bach" / "model.onnx").exists(), "no shipped bach model")
    cache: dict[str, models.Model] = {}

    def loader(name: str) -> models.Model:
        return cache.setdefault(name, models.load(name))

    te.answer_a_phrase(SHIPPED / "bach", jazz_transformer, loader)


def test_evaluate_streams_a_jazz_transformer_one_token_at_a_time(jazz_transformer):
    import math

    from partimento.training.evaluate import evaluate

    figures = evaluate(str(jazz_transformer), write=False)
    V = len(models.load(jazz_transformer).contract.encoding["tokens"])
    assert figures["pieces"] >= 1 and figures["tokens"] > 100
    assert abs(figures["nll_per_token"] - math.log(V)) < 0.5  # two steps: about uniform


UNSUPPORTED = [(s, k) for s in STYLES for k in MODEL_TYPES if k not in MODELS_BY_STYLE[s]]


def test_every_style_names_the_model_types_it_builds():
    assert set(MODELS_BY_STYLE) == set(STYLES)
    assert MODELS_BY_STYLE["folk"] == ("lstm", "transformer", "gan")
    assert MODELS_BY_STYLE["jazz"] == MODELS_BY_STYLE["piano"] == ("lstm", "transformer")
    for style in STYLES:
        assert resolve(style).model == "lstm"  # the default builds everywhere


@pytest.mark.parametrize(("style", "kind"), UNSUPPORTED)
def test_a_model_type_a_style_does_not_build_is_refused_in_one_line(style, kind):
    with pytest.raises(ConfigError) as err:
        resolve(style, overrides={"model": kind})
    allowed = ", ".join(MODELS_BY_STYLE[style])
    assert str(err.value) == f"model: {kind} is not available for {style} ({allowed})"


def test_piano_gan_is_refused_with_the_message_the_cli_prints():
    with pytest.raises(
        ConfigError,
        match=r"^model: gan is not available for piano "
        r"\(lstm, transformer\)$",
    ):
        resolve("piano", overrides={"model": "gan"})


def test_a_transformer_window_off_the_bar_lines_is_refused_at_once():
    from partimento.training.config import ConfigError, resolve

    with pytest.raises(
        ConfigError,
        match=r"^seq_len: a transformer's window \(100\) must be a "
        r"multiple of window_stride \(16\), e.g. 96$",
    ):
        resolve("piano", overrides={"model": "transformer"})
    with pytest.raises(ConfigError, match=r"^embed_dim: 31 is not a multiple of num_heads"):
        resolve("folk", overrides={"model": "transformer", "embed_dim": 31})


def test_the_grid_step_is_checked_and_jazz_reads_sixteenths():
    from partimento.training.config import ConfigError, resolve

    assert resolve("jazz").grid_step == 1 and resolve("piano").grid_step == 2
    with pytest.raises(ConfigError, match=r"^grid_step: must be 1-4 sixteenths, got 0$"):
        resolve("jazz", overrides={"grid_step": 0})
