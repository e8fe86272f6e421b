"""``partimento harmonize MELODY -o OUT.mid``: a melody file harmonized in four voices, by the
offline model (the lookahead model searched by beam; a DeepBach model by pseudo-Gibbs) or, with
``--live``, the daemon's own causal stepping code.

The output's suffix says what is written (:mod:`partimento.files.outputs`): MIDI, or MusicXML
through music21; anything else is refused before any work. Several melodies go into the folder
``-o`` names, each as ``<its name>.<--format>``, with a progress bar on a terminal.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from partimento.core.errors import CommandError, PartimentoError
from partimento.core.music.melody import Melody
from partimento.files import outputs
from partimento.files.outputs import MIDI_SUFFIXES, TRAIN_EXTRA

FORMATS = {"mid": ".mid", "musicxml": ".musicxml", "mxl": ".mxl"}
"""``--format`` for several melodies: the suffix of each file written."""


def read_melody(path: Path) -> Melody:
    """A melody from a MIDI file, or (with music21, the train extra) MusicXML, ABC, **kern."""
    if path.suffix.lower() in MIDI_SUFFIXES:
        from partimento.files import midifile

        return midifile.read_melody(path)
    if importlib.util.find_spec("music21") is None:
        raise CommandError(
            f"reading {path.suffix} files needs music21: {TRAIN_EXTRA} "
            "(MIDI files need nothing more)"
        )
    from partimento.files.score import read_melody as read_with_music21

    return read_with_music21(path)


def harmonize_file(
    melody_path: Path,
    output: Path,
    *,
    live: bool,
    model: str | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    candidates: int = 8,
    iterations: int | None = None,
) -> str:
    """Harmonize ``melody_path`` into ``output`` (MIDI or MusicXML, by its suffix); the line
    that says what was done."""
    outputs.kind(output)  # an unknown suffix, or MusicXML without music21: before any work
    import numpy as np

    from partimento.core.music import rules
    from partimento.core.music.encoding import octave_shift_into, transpose_grid
    from partimento.core.players import beam, gibbs, harmonizer
    from partimento.files import midifile
    from partimento.files import model as models

    melody = read_melody(melody_path)
    soprano, position, fermata = melody.grid()
    _, mode = rules.estimate_key(soprano)
    name = model or ("bach" if live else "bach-offline")
    loaded = models.load(name)
    if live:
        settings = harmonizer.HarmonizerSettings(
            temperature=temperature or 1.0, candidates=candidates
        )
        h = harmonizer.LiveHarmonizer(
            loaded.contract, loaded.run, settings=settings, mode=mode, seed=seed, heads=loaded.heads
        )
        voices = harmonizer.harmonize(h, soprano, position, fermata)
    else:
        # a melody outside the model's soprano range is sung octaves away, then moved back
        shift = octave_shift_into(soprano, *loaded.contract.encoding["voice_ranges"]["soprano"])
        if loaded.contract.kind == "lookahead-harmonizer" and loaded.heads is not None:
            search = beam.BeamHarmonizer(loaded.contract, loaded.run, loaded.heads)
            voices = search.harmonize(transpose_grid(soprano, shift), position, fermata, mode)
        else:
            voices = gibbs.harmonize(
                transpose_grid(soprano, shift),
                position,
                fermata,
                mode,
                loaded.contract,
                loaded.run,
                temperature=temperature or gibbs.DEFAULT_TEMPERATURE,
                rng=np.random.default_rng(seed),
                **({"iterations": iterations} if iterations else {}),
            )
        voices = np.stack([soprano, *(transpose_grid(v, -shift) for v in voices[1:])])
    with outputs.midi_for(output, title=f"{melody_path.stem}, harmonized") as midi:
        midifile.write_satb(midi, melody, voices)
    return (
        f"{output}: {len(melody.notes)} melody notes harmonized in four voices "
        f"({'live' if live else 'offline'} model {loaded.contract.name}, "
        f"{'minor' if mode else 'major'})"
    )


def planned(melodies: Sequence[Path], output: Path, kind: str) -> list[tuple[Path, Path]]:
    """(melody, output file) pairs: one melody into ``output`` itself (unless it is a folder),
    several into the folder ``output``, each as ``<stem>`` + the suffix of ``kind`` (one of
    :data:`FORMATS`). Every output's type and every melody's existence are checked here,
    before any work."""
    if len(melodies) == 1 and not output.is_dir():
        pairs = [(melodies[0], output)]
    else:
        if output.exists() and not output.is_dir():
            raise CommandError(f"-o {output}: several melodies need a folder to write into")
        pairs = [(m, output / (m.stem + FORMATS[kind])) for m in melodies]
        seen: dict[Path, Path] = {}
        for melody, out in pairs:
            if out in seen:
                raise CommandError(f"{seen[out]} and {melody} would both be written to {out}")
            seen[out] = melody
    for melody, out in pairs:
        outputs.kind(out)
        if not melody.is_file():
            raise CommandError(f"{melody} does not exist")
    return pairs


def cmd_harmonize(args: argparse.Namespace) -> int:
    from partimento.progress import bar, echo

    pairs = planned([Path(m) for m in args.melody], Path(args.output), args.format)
    if len(pairs) > 1:
        Path(args.output).mkdir(parents=True, exist_ok=True)
    failed = 0
    for melody, out in bar(pairs, "harmonizing", unit="file", level=int(len(pairs) > 1)):
        try:
            line = harmonize_file(
                melody,
                out,
                live=args.live,
                model=args.model,
                temperature=args.temperature,
                seed=args.seed,
                candidates=args.candidates,
                iterations=args.iterations,
            )
        except PartimentoError as exc:
            if len(pairs) == 1:
                raise
            print(f"partimento: error: {melody}: {exc}", file=sys.stderr)
            failed += 1
            continue
        echo(line)
    if failed:
        print(f"partimento: {failed} of {len(pairs)} melodies failed", file=sys.stderr)
    return 1 if failed else 0


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    h = subparsers.add_parser(
        "harmonize",
        parents=list(parents),
        help="harmonize a melody file in four voices",
        description="Harmonize a melody (MIDI, MusicXML, ABC or **kern; the top part if "
        "several) and write a MIDI or MusicXML file with parts Soprano, Alto, Tenor and Bass, "
        "the soprano being the melody unchanged. Several melodies go into a folder.",
    )
    h.add_argument("melody", nargs="+", help="the melody file (or several)")
    h.add_argument(
        "-o",
        "--output",
        required=True,
        help="the file to write: .mid/.midi (MIDI) or .musicxml/.xml/.mxl (MusicXML, needs the "
        "train extra); for several melodies, a folder",
    )
    h.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default="mid",
        help="several melodies: what each file in the folder is (default mid)",
    )
    h.add_argument(
        "--live",
        action="store_true",
        help="use the causal live model and the "
        "daemon's own stepping code (default: the offline model, beam search)",
    )
    h.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sampling temperature (default 1.0 live, 0.5 offline)",
    )
    h.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable result")
    h.add_argument(
        "--model",
        default=None,
        help="model name or folder (default bach for --live, else bach-offline)",
    )
    h.add_argument(
        "--candidates",
        type=int,
        default=8,
        help="live: chords sampled per step, the best by voice leading is kept (default 8)",
    )
    h.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="offline: pseudo-Gibbs iterations (default: the sampler's own, scaled to the melody)",
    )
    h.set_defaults(func=cmd_harmonize)
    return h
