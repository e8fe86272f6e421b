"""``partimento sample STYLE -o out.mid``: listen to a model without a keyboard.

STYLE is a model name or folder, found as :func:`partimento.files.model.load` finds it
(:mod:`partimento.files.locations`: ``$PARTIMENTO_MODELS``, the user's models, the shipped
ones). Only the runtime is used (onnxruntime, numpy, mido), never
TensorFlow, so sampling works with the runtime install. What a sample is depends on the model's
contract:

* a continuation model (any ``encoding["type"]``: grid, events, phrase, abc) answers a call
  through :class:`partimento.core.players.respond.Responder`, the daemon's own code path, so a new
  continuation style needs no code here. It hears a seed, then answers for ``--length`` bars
  of 16 sixteenths. The seed is ``--seed-file`` (a melody: MIDI, or with music21
  MusicXML/ABC/**kern), else :func:`random_seed`: one bar of four quarter notes of the C major
  scale around the middle of the model's range, drawn with ``--seed`` (an empty seed would
  leave a model primed only with START to open every sample alike). The answer starts on the
  first beat of the seed's grid at or after its end (:func:`answer_start`) and keeps the seed
  in the model's state throughout; it is in the seed's key (a model trained in one key, folk,
  hears the seed moved into its key and answers moved back). The MIDI file has two tracks:
  ``Seed``, then ``Continuation``.
* an ``abc`` model given ``--seed-file`` or ``--length`` answers like any continuation model,
  as it plays live (the seed written as ABC under ``K:C``). Without them it samples text:
  ``--seed-text`` (default ``X:1``) and ``--chars`` characters after it go to ``out.abc``
  beside the MIDI path, and the first tune becomes ``out.mid`` when music21 parses it (the abc
  style's ``sample_text`` and ``text_to_midi``). The two pairs of options do not mix.
* a harmonizer (``bach``, live, or ``bach-offline``) harmonizes a melody, ``--seed-file`` or
  the chorale soprano in ``docs/examples/chorale-melody.mid``, exactly as ``partimento
  harmonize`` does (its own function is called): four tracks, Soprano to Bass.

``--wav out.wav`` renders the MIDI with fluidsynth and a General MIDI soundfont
(:func:`partimento.commands.demo.render_wavs`); when either is missing one line says what to
install, the MIDI is still written and the exit code is 0. Every other failure is one line and exit
code 1.

"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from partimento.core.errors import PartimentoError
from partimento.core.music.encoding import (
    MAJOR,
    STEPS_PER_QUARTER,
    Note,
    grid_to_notes,
    notes_to_grid,
)
from partimento.core.players.respond import DEFAULT_CANDIDATES
from partimento.files import locations, outputs
from partimento.files.midifile import TickedNote, Track, tempo_of, write_tracks

STEPS_PER_BAR = 16
DEFAULT_BARS = 8
MAX_BARS = 256
DEFAULT_BPM = 100.0
DEFAULT_CHARS = 600
MAX_CHARS = 100_000
TICKS_PER_BEAT = 480
VELOCITY = 80
SEED_PROGRAM, CONTINUATION_PROGRAM = 73, 0  # General MIDI: flute, then piano
C_MAJOR = (0, 2, 4, 5, 7, 9, 11)
FALLBACK_RANGE = (48, 84)

Say = Callable[[str], object]


class SampleError(PartimentoError):
    """A failure to report to the user in one line."""


# --- continuation models ------------------------------------------------------------------------


def pitch_range(contract) -> tuple[int, int]:
    """The lowest and highest pitch the model can play: its event tokens (``"60"``, ``"on60"``)
    when it has them, else its grid vocabulary's pitches."""
    if contract.encoding.get("type") == "abc":  # characters, no pitch tokens
        return FALLBACK_RANGE
    tokens = contract.encoding.get("tokens")
    if tokens:
        pitches = [int(t) for t in tokens if t.isdigit()]
        pitches += [int(t[2:]) for t in tokens if t.startswith("on") and t[2:].isdigit()]
    else:
        pitches = list(contract.vocabulary.pitches)
    pitches = [p for p in pitches if 0 <= p <= 127]
    return (min(pitches), max(pitches)) if pitches else FALLBACK_RANGE


def random_seed(low: int, high: int, rng: np.random.Generator) -> np.ndarray:
    """One bar of four quarter notes of C major within an octave around the range's middle."""
    middle = (low + high) // 2
    lo, hi = max(low, middle - 6), min(high, middle + 6)
    choices = [p for p in range(lo, hi + 1) if p % 12 in C_MAJOR] or list(range(lo, hi + 1))
    pitches = rng.choice(choices, size=4)
    notes = [Note(int(p), i * STEPS_PER_QUARTER, STEPS_PER_QUARTER) for i, p in enumerate(pitches)]
    return notes_to_grid(notes, STEPS_PER_BAR)


def answer_start(call_steps: int, pickup_steps: int = 0) -> int:
    """The first step at or after the call's end that is on a beat of the call's grid (its
    first downbeat ``pickup_steps`` before the call's start): where the answer begins, as the
    engine starts it on a beat."""
    return call_steps + (-(call_steps + pickup_steps)) % STEPS_PER_QUARTER


def respond(
    loaded,
    call: np.ndarray,
    steps: int,
    *,
    temperature: float,
    seed: int | None,
    pickup_steps: int = 0,
    candidates: int = DEFAULT_CANDIDATES,
    key: tuple[int, int] | None = None,
) -> tuple[list[Note], int]:
    """The model's answer to ``call`` (grid codes) for ``steps`` sixteenths, through the
    daemon's own code path (:class:`partimento.core.players.respond.Responder`: the call's key, the
    call kept in the model's state, the answer that follows the call best); and the step, counted
    from the call's start, where the answer begins (on a beat: the rests up to it are heard
    first). ``key``: the call's key when it is known (else it is heard from the call)."""
    from partimento.core.music.encoding import REST_CODE
    from partimento.core.players.respond import AnswerSettings, Responder

    settings = AnswerSettings(
        temperature=temperature, seed=seed, candidates=candidates, fixed_key=key
    )
    responder = Responder(loaded.contract, loaded.run, settings)
    start = answer_start(len(call), pickup_steps)
    responder.observe(np.concatenate([call, np.full(start - len(call), REST_CODE, np.int16)]))
    return responder.continue_notes(steps), start


def write_parts(path: Path, parts: list[tuple[str, int, list[Note]]], bpm: float) -> None:
    """A type-1 MIDI file, one track per (name, program, notes on the sixteenth grid); each
    track its own channel, the first one carrying the tempo."""
    per_step = TICKS_PER_BEAT // STEPS_PER_QUARTER
    tracks = [
        Track(
            name,
            channel,
            program,
            [TickedNote(n.pitch, n.start * per_step, n.end * per_step, VELOCITY) for n in notes],
        )
        for channel, (name, program, notes) in enumerate(parts)
    ]
    write_tracks(path, tracks, ticks_per_beat=TICKS_PER_BEAT, tempo_us=tempo_of(bpm))


def sample_continuation(
    loaded,
    output: Path,
    *,
    target: Path | None = None,
    bars: int,
    temperature: float,
    seed: int | None,
    seed_file: Path | None,
    bpm: float | None,
    say: Say,
) -> Path:
    """The seed (file or random bar) then ``bars`` bars of the model's answer to it."""
    rng = np.random.default_rng(seed)  # the random bar; the model draws from seed + 1
    pickup, key = 0, None
    if seed_file is not None:
        melody = _read_melody(seed_file)
        codes = melody.grid()[0]
        pickup = int(round(melody.pickup_quarters * STEPS_PER_QUARTER))
        bpm = bpm or melody.bpm
        what = f"seed {seed_file.name}"
    else:
        codes = random_seed(*pitch_range(loaded.contract), rng)
        key = (0, MAJOR)  # drawn from C major
        what = "a random one-bar seed"
    answer, offset = respond(
        loaded,
        codes,
        bars * STEPS_PER_BAR,
        temperature=temperature,
        seed=None if seed is None else seed + 1,
        pickup_steps=pickup,
        key=key,
    )
    moved = [Note(n.pitch, n.start + offset, n.length) for n in answer]
    write_parts(
        target or output,
        [
            ("Seed", SEED_PROGRAM, grid_to_notes(codes)),
            ("Continuation", CONTINUATION_PROGRAM, moved),
        ],
        bpm or DEFAULT_BPM,
    )
    say(
        f"{output}: {len(moved)} notes over {bars} bars continuing {what} (model "
        f"{loaded.contract.name}, temperature {temperature:g}, seed "
        f"{'random' if seed is None else seed})"
    )
    return output


def _read_melody(path: Path):
    from partimento.commands.harmonize import read_melody

    if not path.is_file():
        raise SampleError(f"seed file {path} does not exist")
    return read_melody(path)


# --- abc: text --------------------------------------------------------------------------------


def sample_abc(
    loaded,
    output: Path,
    *,
    target: Path | None = None,
    seed_text: str | None,
    chars: int,
    temperature: float,
    seed: int | None,
    say: Say,
) -> Path | None:
    """``output``'s ``.abc`` text, and ``output`` as MIDI (written at ``target`` if given)
    when music21 can read the tune; returns the MIDI path or None."""
    target = target or output
    from partimento.core.players.abc import sample_text

    seed_text = "X:1\n" if seed_text is None else seed_text.replace("\\n", "\n")
    text = sample_text(loaded, seed_text, chars, temperature=temperature, seed=seed or 0)
    text_path = output.with_suffix(".abc")
    text_path.write_text(text)
    say(
        f"{text_path}: {chars} characters of ABC (model {loaded.contract.name}, temperature "
        f"{temperature:g}, seed {seed})"
    )
    if importlib.util.find_spec("music21") is None:
        say("no MIDI: reading ABC needs music21 (pip install 'partimento[train]')")
        return None
    from partimento.files.score import abc_problem, text_to_midi

    if not text_to_midi(text, target):
        target.unlink(missing_ok=True)  # nothing half written
        say(f"no MIDI: {abc_problem(text) or 'music21 cannot write the tune as MIDI'}")
        return None
    kind = "MIDI" if target == output else "MusicXML"
    say(f"{output}: the first tune as {kind} (music21)")
    return target


# --- harmonizers ------------------------------------------------------------------------------


def sample_harmony(
    folder: Path,
    live: bool,
    output: Path,
    *,
    temperature: float | None,
    seed: int | None,
    seed_file: Path | None,
    target: Path | None = None,
) -> Path:
    """``partimento harmonize`` itself, on ``seed_file`` or the chorale melody; the MIDI
    written at ``target`` if given."""
    target = target or output
    from partimento.commands.harmonize import harmonize_file

    melody = seed_file if seed_file is not None else locations.example_melody()
    if not Path(melody).is_file():
        raise SampleError(f"seed file {melody} does not exist")
    line = harmonize_file(
        Path(melody), target, live=live, model=str(folder), temperature=temperature, seed=seed
    )
    print(line.replace(str(target), str(output), 1))
    return target


# --- the command ------------------------------------------------------------------------------


def render(midi: Path, wav: Path, soundfont: Path | None, say: Say) -> Path | None:
    """``midi`` as ``wav`` through fluidsynth (rendered in a scratch folder, then moved, so no
    other file beside the MIDI is touched); None when fluidsynth or a soundfont is missing."""
    from partimento.commands.demo import DemoError, render_wavs

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "sample.mid"
        shutil.copyfile(midi, copy)
        try:
            done = render_wavs(
                [copy], soundfont, lambda line: None if line.startswith("wrote ") else say(line)
            )
        except DemoError as exc:
            raise SampleError(str(exc).replace(str(copy), str(midi))) from exc
        if not done:
            return None
        wav.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(done[0]), str(wav))
    say(f"{wav}: rendered with fluidsynth")
    return wav


def sample(
    style: str,
    output: Path,
    *,
    bars: int | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    seed_file: Path | None = None,
    bpm: float | None = None,
    seed_text: str | None = None,
    chars: int | None = None,
    wav: Path | None = None,
    soundfont: Path | None = None,
    say: Say = print,
) -> Path | None:
    """Write a sample of ``style`` to ``output`` (and ``wav``); the MIDI path, or None when an
    abc sample made no MIDI."""
    from partimento.files import model

    if bars is not None and not 1 <= bars <= MAX_BARS:
        raise SampleError(f"--length {bars}: give between 1 and {MAX_BARS} bars")
    if chars is not None and not 1 <= chars <= MAX_CHARS:
        raise SampleError(f"--chars {chars}: give between 1 and {MAX_CHARS} characters")
    if bpm is not None and not 20 <= bpm <= 400:
        raise SampleError(f"--bpm {bpm:g}: give between 20 and 400")
    if temperature is not None and not temperature > 0:
        raise SampleError(f"--temperature {temperature:g}: must be above 0")
    outputs.kind(output)  # an unknown suffix, or MusicXML without music21: before any work
    folder = model.find(style)
    contract = model.read_contract(folder)
    if (
        contract.encoding.get("type") == "abc"
        and (seed_file is not None or bars is not None)
        and (seed_text is not None or chars is not None)
    ):
        raise SampleError(
            "abc: --seed-text and --chars sample ABC text, --seed-file and "
            "--length answer a melody as the daemon does; give one pair or the "
            "other"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    with outputs.midi_for(output, title=f"{contract.name}, sampled") as target:
        midi = _sample_into(
            contract,
            folder,
            output,
            target,
            bars=bars,
            temperature=temperature,
            seed=seed,
            seed_file=seed_file,
            bpm=bpm,
            seed_text=seed_text,
            chars=chars,
            say=say,
        )
        if wav is not None and midi is not None:
            render(midi, wav, soundfont, say)
    return output if midi is not None else None


def _sample_into(
    contract,
    folder: Path,
    output: Path,
    target: Path,
    *,
    bars: int | None,
    temperature: float | None,
    seed: int | None,
    seed_file: Path | None,
    bpm: float | None,
    seed_text: str | None,
    chars: int | None,
    say: Say,
) -> Path | None:
    """The sample ``contract``'s kind makes, as MIDI at ``target`` (the user's ``output``
    named in what is said); the MIDI path, or None when an abc sample made no MIDI."""
    from partimento.files import model

    if contract.kind in ("live-harmonizer", "offline-harmonizer", "lookahead-harmonizer"):
        midi: Path | None = sample_harmony(
            folder,
            contract.kind == "live-harmonizer",
            output,
            temperature=temperature,
            seed=seed,
            seed_file=seed_file,
            target=target,
        )
    elif contract.encoding.get("type") == "abc" and seed_file is None and bars is None:
        from partimento.core.players.abc import TEXT_TEMPERATURE

        midi = sample_abc(
            model.load(folder),
            output,
            target=target,
            seed_text=seed_text,
            chars=chars or DEFAULT_CHARS,
            temperature=temperature or TEXT_TEMPERATURE,
            seed=seed,
            say=say,
        )
    else:
        midi = sample_continuation(
            model.load(folder),
            output,
            bars=bars or DEFAULT_BARS,
            temperature=temperature or 1.0,
            seed=seed,
            target=target,
            seed_file=seed_file,
            bpm=bpm,
            say=say,
        )
    return midi


def cmd_sample(args: argparse.Namespace) -> int:
    """``partimento sample``."""
    sample(
        args.style,
        Path(args.output),
        bars=args.length,
        temperature=args.temperature,
        seed=args.seed,
        seed_file=Path(args.seed_file) if args.seed_file else None,
        bpm=args.bpm,
        seed_text=args.seed_text,
        chars=args.chars,
        wav=Path(args.wav) if args.wav else None,
        soundfont=Path(args.soundfont) if args.soundfont else None,
    )
    return 0


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    """Add ``sample`` to ``partimento``'s subcommands; the handler is set as ``func``."""
    s = subparsers.add_parser(
        "sample",
        parents=list(parents),
        help="write a sample of a model as MIDI (and WAV)",
        description="Write what a model plays. Continuation styles continue --seed-file (else "
        "a random bar of C major) for --length bars: tracks Seed and Continuation. abc models "
        "write ABC text (OUTPUT with .abc) and its first tune as MIDI when music21 reads it, or "
        "with --seed-file or --length answer like any continuation style. "
        "bach and bach-offline harmonize --seed-file (else a chorale melody) in four voices. "
        "Uses the runtime only (onnxruntime), never TensorFlow.",
    )
    s.add_argument(
        "style",
        metavar="STYLE",
        help="model name or folder (a name as partimento run finds it: $PARTIMENTO_MODELS, "
        "your models folder, the shipped models)",
    )
    s.add_argument(
        "-o",
        "--output",
        required=True,
        help="the file to write: .mid/.midi (MIDI) or .musicxml/.xml/.mxl (MusicXML, needs the "
        "train extra)",
    )
    s.add_argument(
        "--length",
        type=int,
        default=None,
        metavar="BARS",
        help=f"continuation: bars of 16 sixteenths to generate (default "
        f"{DEFAULT_BARS}, at most {MAX_BARS})",
    )
    s.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sampling temperature "
        "(default 1.0; abc text 0.9; harmonizers: as partimento harmonize)",
    )
    s.add_argument(
        "--seed", type=int, default=None, help="random seed: the same seed, the same file"
    )
    s.add_argument(
        "--seed-file",
        default=None,
        help="the melody the model continues or "
        "harmonizes (MIDI; MusicXML, ABC, **kern with the train extra)",
    )
    s.add_argument(
        "--bpm",
        type=float,
        default=None,
        help=f"continuation: tempo (default the seed file's, else {DEFAULT_BPM:g})",
    )
    s.add_argument(
        "--seed-text",
        default=None,
        help="abc: the text the sample starts with, \\n for a new line (default 'X:1')",
    )
    s.add_argument(
        "--chars",
        type=int,
        default=None,
        help=f"abc: characters to sample (default {DEFAULT_CHARS})",
    )
    s.add_argument(
        "--wav",
        default=None,
        help="also render this WAV with fluidsynth and a General MIDI soundfont, when installed",
    )
    s.add_argument(
        "--soundfont",
        default=None,
        help="the .sf2 for --wav (default: $PARTIMENTO_SOUNDFONT, else the usual system places)",
    )
    s.set_defaults(func=cmd_sample)
    return s
