"""Which music21 chorale belongs to which split of the standard JSB split, and the shipped file.

The rule (:data:`RULE`): a music21 chorale is *test* when its tune is the tune of a JSB test
chorale, else *valid* when it is the tune of a JSB valid chorale, else *train* (tunes and "the
same tune" as :mod:`partimento.training.data.jsb` defines them). So no chorale whose melody is a JSB
valid or test melody ever trains, and every chorale the JSB split does not hold (music21 has more)
trains. Each JSB valid and test chorale is also aligned with its best music21 version, which
lends it bar positions, fermatas, mode and articulation for evaluation.

The membership derived from the JSB file is shipped as ``jsb_membership.json`` beside this
module, so a user without the JSB file gets the same split: :func:`membership` derives it when
the file is there and reads the shipped one when it is not. A chorale the shipped file does not
name (a newer music21) is compared by tune with the chorales the file puts in valid and test.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from partimento.training.data import jsb
from partimento.training.data.chorales import Chorale

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).with_name("jsb_membership.json")
FORMAT = "partimento-jsb-membership/1"
RULE = (
    f"tune = intervals between successive distinct soprano pitches (repeats merged, rests "
    f"dropped); two tunes are the same when equal or when they share their first or last "
    f"{jsb.SHARED_INTERVALS} intervals. A music21 chorale is test if its tune is a JSB test "
    f"tune, else valid if it is a JSB valid tune, else train; then, until nothing moves, a "
    f"chorale sharing a tune with a test (valid) chorale becomes test (valid), test "
    f"first. Each JSB valid and test "
    f"chorale is aligned (dynamic programming over its sixteenths, repeats allowed, "
    f"transposition -6..+6) with the same-tune music21 chorale it matches best."
)


@dataclass(frozen=True)
class Membership:
    """Music21 chorale names per split, and per JSB valid/test chorale its aligned version."""

    splits: Mapping[str, tuple[str, ...]]
    versions: Mapping[str, tuple[dict, ...]]  # "valid", "test": one entry per JSB chorale
    source: Mapping[str, object]

    def split_of(self, name: str) -> str | None:
        for split, names in self.splits.items():
            if name in names:
                return split
        return None

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "rule": RULE,
            "source": dict(self.source),
            "splits": {s: list(self.splits[s]) for s in jsb.SPLITS},
            "versions": {s: list(self.versions[s]) for s in ("valid", "test")},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Membership:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise jsb.JsbError(f"not a JSB membership file (format {FORMAT!r} expected)")
        try:
            return cls(
                {s: tuple(d["splits"][s]) for s in jsb.SPLITS},
                {s: tuple(d["versions"][s]) for s in ("valid", "test")},
                dict(d.get("source", {})),
            )
        except (KeyError, TypeError) as exc:
            raise jsb.JsbError(f"JSB membership file lacks {exc}") from None

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path = SHIPPED) -> Membership:
        return cls.from_dict(json.loads(Path(path).read_text()))


def assign(
    tunes: Mapping[str, jsb.Tune], valid: list[jsb.Tune], test: list[jsb.Tune]
) -> dict[str, str]:
    """Each named tune's split: test before valid before train, closed under "the same tune"
    (a chorale that shares a tune with a held-out one is held out with it, until none does)."""
    held = {"test": list(test), "valid": list(valid)}
    out = dict.fromkeys(tunes, "train")
    changed = True
    while changed:
        changed = False
        for name, t in tunes.items():
            for split in ("test", "valid"):
                if out[name] == split or (split == "valid" and out[name] == "test"):
                    break
                if any(jsb.same_tune(t, x) for x in held[split]):
                    out[name] = split
                    held[split].append(t)
                    changed = True
                    break
    return out


def derive(
    chorales: list[Chorale],
    pieces: Mapping[str, list[np.ndarray]],
    source: Mapping[str, object] | None = None,
) -> Membership:
    """The membership of ``chorales`` given the JSB ``pieces`` (as :func:`jsb.read` gives)."""
    tunes = {c.name: jsb.chorale_tune(c) for c in chorales}
    if len(tunes) != len(chorales):
        raise ValueError("chorale names repeat")
    jsb_tunes = {s: [jsb.tune(p[0]) for p in pieces[s]] for s in jsb.SPLITS}
    split = assign(tunes, jsb_tunes["valid"], jsb_tunes["test"])
    versions: dict[str, tuple[dict, ...]] = {}
    for s in ("valid", "test"):
        entries = []
        for i, (piece, t) in enumerate(zip(pieces[s], jsb_tunes[s], strict=True)):
            same = [c for c in chorales if jsb.same_tune(t, tunes[c.name])]
            found = jsb.align(piece, same)
            entry = {"index": i, "steps": int(piece.shape[1])}
            entry |= found.describe() if found else {"music21": None}
            if s == "valid":  # valid chorales that share a test tune never select anything
                entry["test_tune"] = any(jsb.same_tune(t, x) for x in jsb_tunes["test"])
            entries.append(entry)
        versions[s] = tuple(entries)
    splits = {s: tuple(sorted(n for n, v in split.items() if v == s)) for s in jsb.SPLITS}
    return Membership(splits, versions, dict(source or {}))


_DERIVED: dict[tuple, Membership] = {}


def membership(chorales: list[Chorale], path: Path | None = None) -> Membership:
    """Derived from the JSB file when it is there, else the shipped file (extended by tune to
    chorales it does not name). A derivation is remembered for the same chorales and file."""
    path = Path(path) if path is not None else jsb.default_path()
    if path.exists():
        key = (tuple(c.name for c in chorales), str(path), path.stat().st_mtime)
        if key not in _DERIVED:
            _DERIVED[key] = _derive_from(chorales, path)
        return _DERIVED[key]
    return _shipped(chorales)


def _derive_from(chorales: list[Chorale], path: Path) -> Membership:
    pieces = jsb.read(path)
    source = {
        "file": str(jsb.JSB_FILE),
        "sha256": jsb.file_digest(path),
        "chorales": {s: len(p) for s, p in pieces.items()},
    }
    return derive(chorales, pieces, source)


def _shipped(chorales: list[Chorale]) -> Membership:
    log.info("no JSB file: the split comes from the shipped %s", SHIPPED.name)
    shipped = Membership.load()
    known = {n for names in shipped.splits.values() for n in names}
    unknown = {c.name: jsb.chorale_tune(c) for c in chorales if c.name not in known}
    if not unknown:
        return shipped
    by_name = {c.name: c for c in chorales}
    held = {
        s: [jsb.chorale_tune(by_name[n]) for n in shipped.splits[s] if n in by_name]
        for s in ("valid", "test")
    }
    extra = assign(unknown, held["valid"], held["test"])
    splits = {
        s: tuple(sorted((*shipped.splits[s], *(n for n, v in extra.items() if v == s))))
        for s in jsb.SPLITS
    }
    return Membership(splits, shipped.versions, shipped.source)


def split(chorales: list[Chorale], member: Membership) -> dict[str, list[Chorale]]:
    out: dict[str, list[Chorale]] = {s: [] for s in jsb.SPLITS}
    for c in chorales:
        out[member.split_of(c.name) or "train"].append(c)
    return out


def evaluation_set(
    split_name: str, chorales: list[Chorale], member: Membership, path: Path | None = None
) -> tuple[list[Chorale], str]:
    """The JSB ``valid`` or ``test`` chorales to evaluate on, and where they come from.

    With the JSB file: its pitches, with bar position, fermata, mode and articulation from the
    aligned music21 version (:func:`jsb.from_jsb`). Without it: the aligned music21 versions
    themselves. Valid chorales that share a test tune are left out."""
    if split_name not in ("valid", "test"):
        raise ValueError(f"evaluation split must be valid or test, got {split_name!r}")
    by_name = {c.name: c for c in chorales}
    entries = [
        e
        for e in member.versions[split_name]
        if e.get("music21") in by_name and not e.get("test_tune")
    ]
    path = Path(path) if path is not None else jsb.default_path()
    if not path.exists():
        return (
            [by_name[e["music21"]] for e in entries],
            f"music21 versions of the JSB {split_name} chorales (no {jsb.JSB_FILE})",
        )
    pieces = jsb.read(path)[split_name]
    out = []
    for e in entries:
        piece, version = pieces[e["index"]], by_name[e["music21"]]
        found = jsb.align(piece, [version])
        assert found is not None
        out.append(jsb.from_jsb(piece, version, found, f"jsb-{split_name}-{e['index']:02d}"))
    return out, (
        f"JSB {split_name} chorales ({jsb.JSB_FILE}): their pitches; bar position, "
        "fermata, mode and repeated-note articulation from the aligned music21 version"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m partimento.training.data.jsb_split [JSB_FILE]``: derive the membership from the
    JSB file and music21's chorales and write the shipped ``jsb_membership.json``."""
    import sys

    from partimento.training.config import TrainConfig
    from partimento.training.data.chorales import load_chorales

    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0]) if args else jsb.default_path()
    if not path.exists():
        print(f"jsb_split: no JSB file at {path}", file=sys.stderr)
        return 1
    chorales = load_chorales(TrainConfig().cache_path)
    member = membership(chorales, path)
    member.save(SHIPPED)
    counts = ", ".join(f"{len(member.splits[s])} {s}" for s in jsb.SPLITS)
    print(f"{SHIPPED}: {counts} music21 chorales")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
