"""The Bach harmonizers on the JSB chorales, measured the way the literature measures.

The chorales are the standard JSB split's
(:func:`partimento.training.data.jsb_split.evaluation_set`): with ``Jsb16thSeparated.json`` their
own pitches, with bar position, fermata, mode and which repeated pitches are struck again taken from
the aligned music21 version; without it, those music21 versions. Valid chorales that share a test
tune are left out of ``valid``.

Figures (:func:`evaluate`):

* ``nll_jsb``: negative log-likelihood in nats per voice per sixteenth of Bach's alto, tenor
  and bass, in the JSB representation (a pitch per sixteenth, a held note is the same pitch
  again), given the soprano. The model's own tokens say *strike p* or *hold*, so
  ``P(p | previous p) = P(hold) + P(strike p)`` (:func:`jsb_log_probs`); a rest after a rest
  is ``P(rest) + P(hold)``. Teacher forcing: the model reads Bach's own earlier voices (and the
  bass and tenor it is given within a step) with the articulation of the aligned music21
  version. ``mean`` is over alto, tenor and bass. The model's own per-token NLL and accuracy
  (``nll_per_token``, ``accuracy``) and a same-voice 3-gram stay beside it.
* ``harmonization``: every soprano harmonized by the model as it plays (the live stepping code,
  or the offline search), by the rule-based harmonizer, and Bach's own chorales, all measured by
  one code: ``agreement`` (share of sixteenths where a voice sounds Bach's exact pitch, of
  those where Bach's voice sounds; ``mean`` over alto, tenor and bass),
  ``chord_changes_per_bar`` (changes of the sounding four-voice sonority per bar, bars counted
  by their downbeats), and :func:`partimento.core.music.voiceleading.metrics`' rates (parallels per
  100 chord changes, triads and sevenths among four-voice sonorities, crossings, spacing, range).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from partimento.core.music import rules, voiceleading
from partimento.core.music.encoding import REST_CODE, Vocabulary, sounding_pitches
from partimento.core.players.sampling import log_softmax, nll_and_hits
from partimento.training.config import TrainConfig
from partimento.training.data.chorales import Chorale

HARMONY = ("alto", "tenor", "bass")
ROW = {"alto": 1, "tenor": 2, "bass": 3}


@dataclass(frozen=True)
class EvalSet:
    split: str
    chorales: list[Chorale]
    source: str


def load_set(cfg: TrainConfig, split: str = "test", limit: int = 0) -> EvalSet:
    """The JSB ``split`` chorales the config's corpus has versions of (all of them, unless the
    config reads a limited corpus), the first ``limit`` if given."""
    from partimento.training.data import jsb_split
    from partimento.training.data.chorales import load_chorales

    chorales = load_chorales(cfg.cache_path, rebuild=False, limit=cfg.limit or None)
    pieces, source = jsb_split.evaluation_set(split, chorales, jsb_split.membership(chorales))
    if not pieces:
        raise ValueError(
            f"no JSB {split} chorale has a version in the corpus read (limit {cfg.limit})"
        )
    return EvalSet(split, pieces[: limit or None], source)


def readable(chorales: Sequence[Chorale], vocab: Vocabulary) -> tuple[list[Chorale], list[str]]:
    """The chorales whose every pitch the vocabulary holds, and the names of the others (a
    model cannot be scored on a pitch it has no token for; a shipped model reads them all)."""
    keep, left = [], []
    for c in chorales:
        codes = np.unique(np.asarray(c.voices))
        ok = all(vocab.has_code(int(x)) for x in codes)
        (keep if ok else left).append(c)
    return keep, [c.name for c in left]


# --- likelihood ---------------------------------------------------------------------------------


def jsb_log_probs(logits: np.ndarray, codes: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """``(steps,)`` log-probability of each step's sounding pitch (JSB representation) under
    ``logits`` ``(steps, V)`` over the model's tokens; ``codes`` is the voice's grid."""
    lp = log_softmax(logits)
    sounding = sounding_pitches(np.asarray(codes)).astype(np.int64)
    before = np.concatenate([[REST_CODE], sounding[:-1]])
    hold = vocab.index("_")
    target = vocab.encode(np.where(sounding >= 0, sounding, REST_CODE))
    rows = np.arange(len(sounding))
    p = np.exp(lp[rows, target])
    p = p + np.where(sounding == before, np.exp(lp[:, hold]), 0.0)
    return np.log(np.maximum(p, 1e-300))


FeedFn = Callable[[Chorale], dict[str, np.ndarray]]


def likelihood(
    run: Callable,
    feeds_of: FeedFn,
    chorales: Sequence[Chorale],
    vocab: Vocabulary,
    outputs: dict[str, str],
) -> dict:
    """Teacher-forced NLL (JSB representation and per token) and accuracy per harmony voice.

    ``feeds_of(c)`` gives the whole chorale's model inputs (batch 1, every step); ``outputs``
    names each voice's logits."""
    jsb = dict.fromkeys(HARMONY, 0.0)
    tok = {v: [0.0, 0] for v in HARMONY}
    steps = 0
    for c in chorales:
        out = run(feeds_of(c), list(outputs.values()))
        for v in HARMONY:
            logits = np.asarray(out[outputs[v]], np.float64)[0]
            jsb[v] -= float(jsb_log_probs(logits, c.voices[ROW[v]], vocab).sum())
            nll, hits, _ = nll_and_hits(logits, vocab.encode(c.voices[ROW[v]]))
            tok[v][0] += nll
            tok[v][1] += hits
        steps += c.steps
    per = {v: round(jsb[v] / steps, 4) for v in HARMONY}
    per["mean"] = round(sum(jsb.values()) / (3 * steps), 4)
    token = {v: round(tok[v][0] / steps, 4) for v in HARMONY}
    token["mean"] = round(sum(t[0] for t in tok.values()) / (3 * steps), 4)
    return {
        "steps": steps,
        "nll_jsb": per,
        "nll_per_token": token,
        "accuracy": {v: round(tok[v][1] / steps, 4) for v in HARMONY},
    }


def ngram_baseline(train: Sequence[Chorale], test: Sequence[Chorale], vocab: Vocabulary) -> dict:
    """A same-voice 3-gram over the model's tokens: NLL per token and accuracy."""
    from partimento.training.baselines import NGram

    out = {}
    for v in HARMONY:
        ng = NGram(order=3, vocab_size=len(vocab)).fit(
            [vocab.encode(c.voices[ROW[v]]) for c in train]
        )
        seqs = [vocab.encode(c.voices[ROW[v]]) for c in test]
        out[v] = {
            "order": 3,
            "nll": round(float(ng.nll(seqs)), 4),
            "accuracy": round(float(ng.accuracy(seqs)), 4),
        }
    return out


# --- harmonization ------------------------------------------------------------------------------


def bars(position: np.ndarray) -> int:
    """Bars of a piece: its downbeats (position 0 after another position), at least one."""
    p = np.asarray(position)
    starts = (p == 0) & np.concatenate([[True], p[:-1] != 0])
    return max(1, int(starts.sum()))


def agreement(pieces: Sequence[np.ndarray], reference: Sequence[Chorale]) -> dict:
    """Share of sixteenths where each harmony voice sounds the reference's exact pitch (of
    those where the reference voice sounds)."""
    same = dict.fromkeys(HARMONY, 0)
    total = dict.fromkeys(HARMONY, 0)
    for g, c in zip(pieces, reference, strict=True):
        gen, ref = sounding_pitches(np.asarray(g)), sounding_pitches(c.voices)
        for v in HARMONY:
            on = ref[ROW[v]] >= 0
            same[v] += int((gen[ROW[v]][on] == ref[ROW[v]][on]).sum())
            total[v] += int(on.sum())
    out = {v: round(same[v] / max(1, total[v]), 4) for v in HARMONY}
    out["mean"] = round(sum(same.values()) / max(1, sum(total.values())), 4)
    return out


def table(pieces: Sequence[np.ndarray], reference: Sequence[Chorale], *, compare: bool) -> dict:
    """The voice-leading figures of ``pieces`` (harmonizations of ``reference``'s sopranos);
    with ``compare``, their agreement with the reference too."""
    ranges = voiceleading.SATB_RANGES
    figs = voiceleading.corpus_metrics(pieces, ranges)
    out = {
        k: round(float(v), 4)
        for k, v in figs.items()
        if not k.startswith("n_") and k not in voiceleading.COUNT_KEYS
    }
    out["chord_changes_per_bar"] = round(
        figs["chord_changes"] / sum(bars(c.position) for c in reference), 3
    )
    if compare:
        out["agreement"] = agreement(pieces, reference)
        pc = [
            voiceleading.pitch_class_matches(g, c.voices)
            for g, c in zip(pieces, reference, strict=True)
        ]
        out["pitch_class_agreement_with_bach"] = round(
            sum(a for a, _ in pc) / max(1, sum(b for _, b in pc)), 4
        )
    return out


def harmonization(
    name: str,
    harmonize: Callable[[Chorale], np.ndarray],
    chorales: Sequence[Chorale],
    settings: dict,
) -> dict:
    """``name``'s harmonizations beside Bach's own and the rules', and the time they took."""
    t0 = time.monotonic()
    generated = [harmonize(c) for c in chorales]
    seconds = time.monotonic() - t0
    steps = sum(c.steps for c in chorales)
    timing = {
        "ms_per_step": round(seconds / steps * 1e3, 3),
        "seconds_per_piece": round(seconds / len(chorales), 3),
    }
    rule_pieces = [rules.harmonize(c.voices[0]) for c in chorales]
    return {
        "settings": {**settings, **timing},
        name: table(generated, chorales, compare=True),
        "bach": table([c.voices for c in chorales], chorales, compare=False),
        "rules": table(rule_pieces, chorales, compare=True),
    }


def live_harmonize(m, settings, seed: int) -> Callable[[Chorale], np.ndarray]:
    """The daemon's own stepping code, one chorale after another (one generator)."""
    from partimento.core.players import harmonizer

    h = harmonizer.LiveHarmonizer(m.contract, m.run, settings=settings, seed=seed, heads=m.heads)

    def play(c: Chorale) -> np.ndarray:
        h.mode = c.mode
        return harmonizer.harmonize(h, c.voices[0], c.position, c.fermata)

    return play


def beam_harmonize(m, settings) -> Callable[[Chorale], np.ndarray]:
    from partimento.core.players.beam import BeamHarmonizer

    b = BeamHarmonizer(m.contract, m.run, m.heads, settings=settings)
    return lambda c: b.harmonize(c.voices[0], c.position, c.fermata, c.mode)


def settings_dict(settings) -> dict:
    return dataclasses.asdict(settings)


def chorale_feeds(m, ahead: int) -> FeedFn:
    """The whole chorale as the step model reads it, from zero state (teacher forcing)."""
    from partimento.training.styles import bach

    names = {t.name for t in m.contract.inputs if t.role in ("token", "condition", "given")}
    vocab = m.contract.vocabulary

    def feeds(c: Chorale) -> dict[str, np.ndarray]:
        arrays = bach.piece_arrays(c, vocab, ahead)
        out = {k: arrays[k][None] for k in names}
        out |= {t.name: np.zeros((1, int(t.shape[-1])), np.float32) for t, _ in m.contract.states}
        return out

    return feeds
