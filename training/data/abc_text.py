"""ABC tunes as plain text, for the character-level ``abc`` style (the MIT lab's model).

Sources: music21's bundled ABC books (O'Neill's 1850, Ryan's Mammoth, Aird's Airs), always, and
the cleaned Nottingham Music Database (``nottingham/ABC_cleaned/*.abc``, GPL-3.0) under the data
folder: ``cfg.data_dir`` if given (either the data folder or a folder of ``*.abc`` files), else
``$PARTIMENTO_DATA``, else ``../shared/data`` beside the repository. When that folder is absent
the reader says so in the log and goes on with music21's books alone.

Each book is split into tunes at ``X:`` lines and each tune normalised so the model sees one
consistent dialect:

* the file header before the first ``X:`` is dropped, ``%`` comment lines are dropped;
* of the information fields only ``X T M L K P Q R`` are kept (source, history, notes, words
  and transcriber lines are prose the model need not learn), ``X:`` is always ``X:1`` so a
  sampler can prime with the same header;
* tabs become spaces, trailing spaces and blank lines go, characters outside
  :data:`partimento.core.players.abc.CHARACTERS` (printable ASCII and newline) are dropped;
* tunes whose body is identical are kept once.

A tune's text ends with a blank line, so the model learns where a tune ends. Splits are by
tune: sha1 of the tune's body (its lines after ``K:``) mod 10 = 0 test, 1 valid, else train,
so a tune and its duplicate in another book fall in the same split. The normalised splits are
cached as JSON in the cache folder, keyed by the sources and :data:`RULES_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from partimento.core.players.abc import CHARACTERS, split_tunes
from partimento.progress import bar
from partimento.training.config import TrainConfig
from partimento.training.data.chorales import split_of

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
RULES_VERSION = 2
BOOKS = ("oneills1850", "ryansMammoth", "airdsAirs")
NOTTINGHAM = Path("nottingham") / "ABC_cleaned"
KEPT_FIELDS = set("XTMLKPQR")
ROOT = Path(__file__).resolve().parents[2]
_ALLOWED = set(CHARACTERS)


def data_root(cfg: TrainConfig) -> Path:
    """The shared data folder: ``data_dir``, else ``$PARTIMENTO_DATA``, else ../shared/data."""
    given = cfg.data_dir or os.environ.get("PARTIMENTO_DATA", "")
    return Path(given).expanduser() if given else ROOT.parent / "shared" / "data"


def nottingham_files(cfg: TrainConfig) -> list[Path]:
    """The Nottingham ABC books, or [] (with a log message) when the folder is absent."""
    root = data_root(cfg)
    for folder in (root / NOTTINGHAM, root):
        files = sorted(folder.glob("*.abc")) if folder.is_dir() else []
        if files:
            return files
    log.warning(
        "abc: no ABC files in %s or %s; training on music21's books alone", root / NOTTINGHAM, root
    )
    return []


def book_files() -> list[Path]:
    import music21

    corpus = Path(music21.__file__).parent / "corpus"
    return [p for book in BOOKS for p in sorted((corpus / book).glob("*.abc"))]


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def normalise(tune: str) -> str:
    """One tune in the model's dialect (see the module docstring); '' when nothing is left."""
    lines = []
    for line in tune.replace("\r", "").replace("\t", " ").split("\n"):
        line = "".join(ch for ch in line if ch in _ALLOWED).rstrip()
        if not line or line.startswith("%"):
            continue
        field = re.match(r"^([A-Za-z]):", line)
        if field and field.group(1) not in KEPT_FIELDS:
            continue
        if field:  # "L: 1/8" and "L:1/8" alike
            line = "X:1" if field.group(1) == "X" else f"{field.group(1)}:{line[2:].strip()}"
        lines.append(line)
    if not any(line.startswith("K:") for line in lines):
        return ""
    return "\n".join(lines) + "\n\n"


def body(tune: str) -> str:
    """The tune's lines after its first ``K:`` line: what the split and deduplication read."""
    return tune.split("\nK:", 1)[-1].split("\n", 1)[-1]


def iter_tunes(cfg: TrainConfig) -> Iterator[tuple[str, str]]:
    """(source, normalised tune) for every tune of every source, in a fixed order."""
    sources = [(p.parent.name, p) for p in book_files()]
    sources += [("nottingham", p) for p in nottingham_files(cfg)]
    for source, path in bar(sources, "reading ABC books", unit="file", level=cfg.progress):
        for tune in split_tunes(read_text(path)):
            text = normalise(tune)
            if text and body(text).strip():
                yield source, text


def cache_file(cfg: TrainConfig) -> Path:
    files = [str(p.resolve()) for p in nottingham_files(cfg)]
    options = {"rules": RULES_VERSION, "books": BOOKS, "files": files}
    digest = hashlib.sha1(json.dumps(options).encode()).hexdigest()[:10]
    return cfg.cache_path / f"abc-text-{digest}.json"


def build(cfg: TrainConfig) -> dict:
    """Every tune normalised, deduplicated, split; with counts per source."""
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    sources: dict[str, int] = {}
    duplicates = 0
    for source, text in iter_tunes(cfg):
        key = body(text)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        sources[source] = sources.get(source, 0) + 1
        splits[split_of(key)].append(text)
    return {"splits": splits, "sources": sources, "duplicates": duplicates}


def load(cfg: TrainConfig) -> dict:
    """The splits (``{"splits": {name: [tune text]}, "sources": ..., "duplicates": ...}``),
    read once and then from the cache; ``cfg.limit`` keeps the first tunes of each split."""
    path = cache_file(cfg)
    if cfg.rebuild or not path.exists():
        data = build(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
        log.info(
            "abc: %s tunes (%d duplicates dropped) cached in %s",
            {k: len(v) for k, v in data["splits"].items()},
            data["duplicates"],
            path,
        )
    data = json.loads(path.read_text())
    if cfg.limit:
        data["splits"] = {k: v[: cfg.limit] for k, v in data["splits"].items()}
    return data
