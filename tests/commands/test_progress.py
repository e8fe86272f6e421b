"""Progress bars appear on a terminal or with -v, never in a pipe otherwise, and work without
tqdm (the runtime does not install it)."""

from __future__ import annotations

import importlib.util
import io
import logging
import subprocess
import sys

import pytest

from partimento import progress

from support.project import ROOT, require


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def quiet_logger():
    """The partimento logger at WARNING, as without -v; restored afterwards."""
    logger = logging.getLogger("partimento")
    before = logger.level
    logger.setLevel(logging.WARNING)
    yield logger
    logger.setLevel(before)


def test_nothing_is_drawn_into_a_pipe(quiet_logger):
    pipe = io.StringIO()
    assert list(progress.bar(range(50), "parsing", stream=pipe)) == list(range(50))
    assert pipe.getvalue() == ""


def test_a_terminal_gets_a_bar_with_the_count(quiet_logger):
    screen = Terminal()
    assert list(progress.bar(range(50), "parsing chorales", stream=screen)) == list(range(50))
    assert "parsing chorales" in screen.getvalue()
    assert "50/50" in screen.getvalue()


def test_level_0_is_silent_even_on_a_terminal(quiet_logger):
    screen = Terminal()
    list(progress.bar(range(5), "parsing", stream=screen, level=0))
    assert screen.getvalue() == ""


def test_minus_v_asks_for_it_in_a_pipe(quiet_logger):
    quiet_logger.setLevel(logging.INFO)
    pipe = io.StringIO()
    list(progress.bar(range(20), "harmonizing", stream=pipe))
    assert "harmonizing" in pipe.getvalue() and "20/20" in pipe.getvalue()


def test_without_tqdm_a_plain_counter(quiet_logger, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tqdm" else real(name, *a)
    )
    screen = Terminal()
    assert list(progress.bar(iter(range(7)), "evaluating", total=7, stream=screen)) == list(
        range(7)
    )
    assert screen.getvalue().endswith("evaluating: 7/7\n")
    pipe = io.StringIO()
    quiet_logger.setLevel(logging.INFO)
    list(progress.bar(range(100), "reading", stream=pipe))
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1] == "reading: 100/100"


def test_the_runtime_does_not_import_tqdm():
    code = "import sys; import partimento.progress, partimento.cli; print('tqdm' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_parsing_folk_tunes_shows_its_progress_with_minus_v(quiet_logger, capsys):
    """The real Essen reader: -v draws the bar on stderr, stdout stays clean; progress 0
    draws nothing."""
    require(importlib.util.find_spec("music21") is not None, "music21 (the train extra)")
    from partimento.training.data import folk

    paths = sorted((folk.corpus_dir() / folk.ESSEN).glob("*.abc"))[:1]
    quiet_logger.setLevel(logging.INFO)
    tunes = folk.read_sources(folk.abc_sources(paths), 3, folk.Stats(), progress=1)
    out, err = capsys.readouterr()
    assert tunes and out == ""
    assert "parsing folk tunes" in err and "3/3" in err
    folk.read_sources(folk.abc_sources(paths), 3, folk.Stats(), progress=0)
    assert capsys.readouterr().err == ""


def test_parsing_the_chorales_shows_its_progress_with_minus_v(quiet_logger, capsys):
    require(importlib.util.find_spec("music21") is not None, "music21 (the train extra)")
    from partimento.training.data import chorales

    quiet_logger.setLevel(logging.INFO)
    read = list(chorales.iter_corpus(2, progress=1))
    out, err = capsys.readouterr()
    assert len(read) == 2 and out == ""
    assert "parsing Bach chorales" in err and "2/2" in err
