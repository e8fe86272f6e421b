"""Model cards: ``docs/models.md`` written from the shipped models' own ``model.json``.

    python -m partimento.training.modelcard [exported_models] > docs/models.md

Every figure on the page comes from a contract, so the page cannot drift from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ("bach", "bach-offline", "folk")
WHAT = {
    "live-harmonizer": "the live, causal four-voice harmonizer the daemon runs: at each "
    "sixteenth it reads the soprano and the previous alto, tenor and bass "
    "and answers bass, then tenor, then alto",
    "offline-harmonizer": "DeepBach-style harmonizer for whole melodies: each voice predicted "
    "from past and future context of the other voices, sampled by "
    "pseudo-Gibbs",
    "lookahead-harmonizer": "the offline harmonizer for whole melodies: the live model's causal "
    "alto, tenor and bass decoder that also reads the melody ahead, "
    "searched by beam under hard voice-leading rules",
    "continuation": "melody continuation in the folk style, one sixteenth token at a time",
    "events": "continuation with notes and chords (or note-on/off, time-shift and velocity "
    "events) as tokens (partimento.core.players.events)",
    "abc": "a character-level model of ABC tune text (the MIT lab's), sampled as text and "
    "played live by writing the player's phrase as ABC (partimento.core.players.abc)",
}
METRICS = (
    ("parallels_per_100", "parallel 5ths+8ves per 100 chord changes"),
    ("parallel_fifths_per_100", "  of which fifths"),
    ("parallel_octaves_per_100", "  of which octaves"),
    ("crossing_share", "steps with voice crossing"),
    ("spacing_sa_share", "steps with S-A over an octave"),
    ("spacing_at_share", "steps with A-T over an octave"),
    ("out_of_range_share", "steps with a voice out of range"),
    ("triad_seventh_share", "sonorities that are triads or sevenths"),
    ("chord_changes_per_bar", "chord changes per bar"),
    ("pitch_class_agreement_with_bach", "pitch-class set equal to Bach's"),
)


CALL_RESPONSE = (
    ("motif_reuse", "motif reuse (answer's interval trigrams found in the call)"),
    ("in_key", "notes in the key"),
    ("density_abs_log_ratio", "density against the call: mean abs(log ratio)"),
    ("within_1_35x", "answers within 1.35x of the call's density"),
    ("density_ratio", "density against the call: geometric mean ratio"),
    ("notes_per_bar", "onsets per bar"),
    ("range", "range of the top line (semitones)"),
    ("step_rate", "steps (1-2 semitones) among intervals"),
    ("interval_overlap", "interval histogram overlap with the references"),
    ("ioi_overlap", "inter-onset histogram overlap with the references"),
    ("offbeat_sixteenths", "onsets on odd sixteenths"),
    ("off_grid_onsets", "onsets off the call's grid (answer not on a beat)"),
)
PER_CALL = {"motif_reuse", "in_key", "density_abs_log_ratio", "within_1_35x", "density_ratio"}
"""The figures a floor (another tune's bars) has of its own; the rest pool the same notes as
the references."""


def call_response(name: str, cr: dict) -> list[str]:
    """The call-and-response table of a continuation model's card."""
    rows = ("answers", "references", "floor")
    key = (
        "the tunes' labelled keys"
        if cr.get("key") == "labelled"
        else "a key estimated from call and reference together (no labels)"
    )
    lines = [
        "",
        f"Call and response (`partimento evaluate {name}`, seed {cr['seed']}): the "
        f"first {cr['call_bars']} bars of {cr['tunes']} held-out tunes as the call, "
        f"{cr['answer_bars']} bars answered through the daemon's code path "
        f"({cr['candidates']} candidates, temperature {cr['temperature']:g}); the "
        "references are the tunes' own next bars, the floor another tune's bars moved into "
        f"the key. In-key against {key}; the key heard from the call equals it in "
        f"{cr['key_agreement']:.0%} of the calls (moves the model the same way, relative "
        f"keys alike: {cr['relative_key_agreement']:.0%}). training/answers.py defines "
        "every figure.",
        "",
        "| | " + " | ".join(rows) + " |",
        "|---" * (len(rows) + 1) + "|",
    ]
    for k, label in CALL_RESPONSE:
        cells = []
        for r in rows:
            if r == "floor" and k not in PER_CALL:
                cells.append("–")
            else:
                cells.append(_fmt(cr.get(r, {}).get(k)))
        if any(c != "–" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return "–" if x is None else str(x)


def card(folder: Path) -> str:
    c = json.loads((folder / "model.json").read_text())
    t, ev = c["training"], c.get("evaluation", {})
    cfg = t["config"]
    size = (folder / "model.onnx").stat().st_size / 1e6
    params = t.get("parameters")
    files = f"- Files: `exported_models/{folder.name}/model.onnx` ({size:.1f} MB), `model.json`"
    lines = [
        f"## `{c['name']}`",
        "",
        f"Style `{c['style']}`, "
        f"{WHAT.get(c['encoding'].get('type', c['kind']), WHAT.get(c['kind'], c['kind']))}.",
        "",
        files + (f"; {params:,} parameters." if isinstance(params, int) else "."),
    ]
    data = t.get("data", {})
    lines.append(f"- Data: {data.get('corpus', '?')}.")
    if "filter" in data:
        lines.append(f"- Filter: {data['filter']}.")
    counts = data.get("pieces") or data.get("tunes") or {}
    lines.append(
        f"- Split: {data.get('split', '?')}; "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + " pieces."
    )
    lines.append(f"- Transposition: {c['encoding'].get('transposition', '?')}.")
    symbols = c["encoding"].get("tokens") or c["encoding"]["vocabulary"]
    lines.append(f"- Vocabulary: {len(symbols)} symbols (`{symbols[0]}` … `{symbols[-1]}`).")
    keys = (
        (
            "epochs",
            "steps_per_epoch",
            "batch_size",
            "timesteps",
            "gap",
            "embedding",
            "lstm1",
            "middle",
            "second_lstm",
            "dropout",
            "learning_rate",
        )
        if c["kind"] == "offline-harmonizer"
        else (
            "epochs",
            "steps_per_epoch",
            "batch_size",
            "seq_len",
            "embedding",
            "units",
            "layers",
            "dense",
            "dropout",
            "learning_rate",
            "timesteps",
        )
        if c["kind"] == "lookahead-harmonizer"
        else (
            "epochs",
            "steps_per_epoch",
            "batch_size",
            "seq_len",
            "embedding",
            "units",
            "layers",
            "dropout",
            "learning_rate",
        )
        + (("dense",) if c["style"] == "bach" else ())
    )
    relevant = {k: cfg[k] for k in keys if k in cfg}
    lines.append("- Settings: " + ", ".join(f"{k} {v}" for k, v in relevant.items()) + ".")
    secs = t.get("seconds")
    lines.append(
        f"- Training time: {secs / 60:.0f} minutes wall time (2-core CPU, no GPU)."
        if secs
        else "- Training time: not recorded."
    )
    if t.get("notes"):
        lines.append(f"- Note: {t['notes']}")
    lines.append(
        f"- ONNX parity with Keras: max logit difference "
        f"{t.get('parity_max_logit_difference', float('nan')):.1e}."
    )
    lines += [
        "",
        "Reproduce (seeded; each step's figures end up in `model.json`):",
        "",
        "```sh",
        t.get("reproduce")
        or t.get("command")
        or f"partimento train {c['style']} --seed {cfg['seed']}",
        f"partimento export runs/{c['style']} -o exported_models/{folder.name}",
        f"partimento evaluate {folder.name}",
        "```",
        "",
    ]
    if not ev:
        return "\n".join(lines + ["Not evaluated yet.", ""])
    lines.append(
        f"Evaluation on the {ev['split']} split ({ev['pieces']} pieces, "
        f"{ev.get('seconds', '?')} s):"
    )
    lines.append("")
    nll, acc = ev.get("nll_per_token"), ev.get("accuracy")
    if ev.get("set"):
        lines += [f"Chorales: {ev['set']}.", ""]
    if isinstance(nll, dict):
        lines += ["| | " + " | ".join(nll) + " |", "|---" * (len(nll) + 1) + "|"]
        if "nll_jsb" in ev:
            lines.append(
                "| NLL per voice and sixteenth, JSB representation (nats) | "
                + " | ".join(_fmt(ev["nll_jsb"].get(k)) for k in nll)
                + " |"
            )
        lines += [
            "| NLL per token (nats) | " + " | ".join(_fmt(v) for v in nll.values()) + " |",
            "| accuracy | " + " | ".join(_fmt(acc.get(k)) for k in nll) + " |",
        ]
        base = ev.get("baseline_ngram")
        if base:
            lines.append(
                "| 3-gram NLL (same voice) | "
                + " | ".join(_fmt(base[k]["nll"]) if k in base else "–" for k in nll)
                + " |"
            )
            lines.append(
                "| 3-gram accuracy | "
                + " | ".join(_fmt(base[k]["accuracy"]) if k in base else "–" for k in nll)
                + " |"
            )
        if "context" in ev:
            lines.append(f"\nContext: {ev['context']}.")
    elif nll is not None:
        lines += [
            "| model | NLL per token (nats) | accuracy |",
            "|---|---|---|",
            f"| this model | {_fmt(nll)} | {_fmt(acc)} |",
        ]
        for name, b in ev.get("baseline_ngram", {}).items():
            lines.append(f"| {name} baseline | {_fmt(b['nll'])} | {_fmt(b['accuracy'])} |")
    parse = ev.get("samples_parsing_with_music21")
    if parse:
        runs = parse if isinstance(parse, list) else [parse]
        lines += [
            "",
            "Text sampled from `X:1` (600 characters, seeds 0 on) whose first tune "
            "music21 parses: "
            + "; ".join(
                f"{p['parsed']} of {p['samples']} at temperature {p['temperature']:g}" for p in runs
            )
            + ".",
        ]
    if "call_response" in ev:
        lines += call_response(folder.name, ev["call_response"])
    harm = ev.get("harmonization")
    if harm:
        who = [k for k in harm if k != "settings"]
        settings = ", ".join(f"{k} {v}" for k, v in harm["settings"].items())
        lines += [
            "",
            f"Harmonizing every test soprano ({settings}), measured the same way for "
            "Bach's own chorales and the rule-based baseline:",
            "",
            "| | " + " | ".join(who) + " |",
            "|---" * (len(who) + 1) + "|",
        ]
        for key, label in METRICS:
            lines.append(f"| {label} | " + " | ".join(_fmt(harm[w].get(key)) for w in who) + " |")
        for voice in ("alto", "tenor", "bass", "mean"):
            lines.append(
                f"| exact pitch as Bach's, {voice} | "
                + " | ".join(_fmt(harm[w].get("agreement", {}).get(voice)) for w in who)
                + " |"
            )
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> None:
    root = Path((argv or sys.argv[1:] or ["exported_models"])[0])
    folders = [root / n for n in ORDER if (root / n / "model.json").exists()]
    folders += sorted(p for p in root.iterdir() if (p / "model.json").exists() and p not in folders)
    print("# Shipped models\n")
    print(
        "Written by `python -m partimento.training.modelcard > docs/models.md` from each model's "
        "own `model.json`. Test figures are computed by `partimento evaluate` through "
        "onnxruntime on the test split, which is never used for training or model "
        "selection (see docs/decisions.md for the splits).\n"
    )
    for f in folders:
        print(card(f))
    from partimento.training.literature import comparison

    print("\n".join(comparison(root)))


if __name__ == "__main__":
    main()
