"""Published Bach chorale figures, with their units and settings, for ``docs/models.md``.

Each entry says what was measured and how its setting differs from Partimento's: the shipped
models are measured by :mod:`training.bach_eval` on the 77 JSB test chorales (NLL of Bach's
alto, tenor and bass per voice and sixteenth, in nats, given the soprano; the JSB
representation, where a held note is the same pitch again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Published:
    system: str
    figure: str
    setting: str


PUBLISHED = (
    Published(
        "TonicNet (Peracha 2019, arXiv 1911.11775)",
        "0.220 nats per token (test NLL)",
        "the standard JSB split at sixteenths; mean over soprano, bass, alto and tenor "
        "(the soprano is predicted too, not given); causal; each step's true chord token "
        "is read before its voices (teacher forcing) and its own prediction is left out "
        "of the figure; trained on all 229 JSB training chorales in every transposition "
        "(31 of them share a tune with a test chorale), GPU, 60 epochs",
    ),
    Published(
        "DeepBach (Hadjeres, Pachet, Nielsen 2017)",
        "no NLL on the JSB split",
        "each voice predicted from all the others, past and future (a pseudo-likelihood), "
        "its own split of music21's chorales; harmonizes by pseudo-Gibbs sampling and was "
        "judged by listeners. Partimento's earlier bach-offline was this model "
        "(`--model deepbach`)",
    ),
    Published(
        "BachBot (Liang et al. 2017)",
        "about 28 % of tokens right (causal alto, tenor and bass, greedy)",
        "its own split and note-level tokens (a token per note and fermata, not per "
        "sixteenth); the soprano given, like Partimento's live model",
    ),
)


def comparison(root: Path) -> list[str]:
    """Markdown lines: the shipped ``bach`` and ``bach-offline`` beside the published."""
    import json

    rows = []
    for name in ("bach", "bach-offline"):
        path = root / name / "model.json"
        if not path.exists():
            continue
        c = json.loads(path.read_text())
        ev = c.get("evaluation", {})
        nll = ev.get("nll_jsb", {})
        harm = ev.get("harmonization", {})
        mine = next((harm[k] for k in ("live", "offline") if k in harm), {})
        agree = mine.get("agreement", {}).get("mean")
        figure = (
            f"{nll['mean']:.3f} nats per voice and sixteenth (alto {nll['alto']:.3f}, "
            f"tenor {nll['tenor']:.3f}, bass {nll['bass']:.3f})"
            if nll
            else "–"
        )
        if agree is not None:
            figure += f"; {100 * agree:.1f} % of sixteenths on Bach's exact pitch"
        how = (
            "causal, the soprano given up to this sixteenth"
            if c["kind"] == "live-harmonizer"
            else "causal in alto, tenor and bass, reading the soprano "
            f"{c['encoding'].get('ahead', {}).get('steps', '?')} sixteenths ahead"
        )
        rows.append(
            Published(
                f"Partimento `{name}`",
                figure,
                f"{how}; JSB test chorales; trained only on chorales whose tune "
                "is no JSB valid or test tune",
            )
        )
    lines = ["## Beside published systems", "", "| system | figure | setting |", "|---|---|---|"]
    lines += [f"| {p.system} | {p.figure} | {p.setting} |" for p in (*rows, *PUBLISHED)]
    lines += [
        "",
        "The figures are not of one experiment: each row says what differs. "
        "Partimento's NLL is a full likelihood of Bach's alto, tenor and bass given the "
        "soprano (no chord read for free, nothing left out), so it is harder than "
        "TonicNet's per-token figure in one way (no true chord) and easier in another "
        "(the soprano is given).",
        "",
    ]
    return lines
