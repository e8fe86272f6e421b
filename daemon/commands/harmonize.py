"""``partimento harmonize MELODY -o OUT.mid``: a melody file harmonized in four voices, by the
offline model (the lookahead model searched by beam; a DeepBach model by pseudo-Gibbs) or, with
``--live``, the daemon's own causal stepping code."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from partimento.core.errors import CommandError
from partimento.core.music.melody import Melody

TRAIN_EXTRA = "pip install 'partimento[train]'"
MIDI_SUFFIXES = (".mid", ".midi", ".smf")


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
    """Harmonize ``melody_path`` into ``output``; the line that says what was done."""
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
    midifile.write_satb(output, melody, voices)
    return (
        f"{output}: {len(melody.notes)} melody notes harmonized in four voices "
        f"({'live' if live else 'offline'} model {loaded.contract.name}, "
        f"{'minor' if mode else 'major'})"
    )


def cmd_harmonize(args: argparse.Namespace) -> int:
    print(
        harmonize_file(
            Path(args.melody),
            Path(args.output),
            live=args.live,
            model=args.model,
            temperature=args.temperature,
            seed=args.seed,
            candidates=args.candidates,
            iterations=args.iterations,
        )
    )
    return 0


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    h = subparsers.add_parser(
        "harmonize",
        parents=list(parents),
        help="harmonize a melody file in four voices",
        description="Harmonize a melody (MIDI, MusicXML, ABC or **kern; the top part if "
        "several) and write a MIDI file with tracks Soprano, Alto, Tenor and Bass, the soprano "
        "being the melody unchanged.",
    )
    h.add_argument("melody", help="the melody file")
    h.add_argument("-o", "--output", required=True, help="the MIDI file to write")
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
