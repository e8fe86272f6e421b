"""``partimento demo``: built-in melodies played through the engine on a simulated clock.

No MIDI port and no sleeping: the demo keeps a virtual monotonic time, feeds each note-on and
note-off to :meth:`Engine.handle <partimento.engine.engine.Engine.handle>` at its time and, between
them, calls :meth:`Engine.tick <partimento.engine.engine.Engine.tick>` whenever
:meth:`Engine.next_time <partimento.engine.engine.Engine.next_time>` asks, as the service's
scheduler does; at the end :meth:`Engine.stop <partimento.engine.engine.Engine.stop>`. So it runs
anywhere the models run, without MIDI hardware, ALSA or JACK (python-rtmidi is not even imported).

Two takes, each written as a type-1 MIDI file of what was played and what came out:

* ``demo-harmonize.mid``: the first four phrases of the chorale *Ein feste Burg ist unser Gott*
  (Luther, 1529, the soprano of Bach's setting BWV 302), harmonized by the live ``bach`` model;
  tracks Melody, Alto, Tenor, Bass, one per MIDI channel.
* ``demo-continue.mid``: the first half of the German children's song *Alle meine Entchen*
  (traditional), then silence, and the ``folk`` model's answer; tracks Phrase and Answer.

Each take is also drawn as a piano roll, ``demo-harmonize.svg`` and ``demo-continue.svg``
(:mod:`partimento.files.pianoroll`: a title, a legend, note names, bar numbers); ``--picture
FILE`` copies the first one elsewhere (the README's picture is made so).

What ``Engine.handle`` costs per note-on is measured with :func:`time.perf_counter` (the first
one includes onnxruntime's warm-up). With ``--wav`` both files are rendered to WAV with the
``fluidsynth`` program and a General MIDI soundfont, when both are installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from partimento.config import Config, ContinueConfig
from partimento.core import midi
from partimento.core.errors import PartimentoError
from partimento.core.midi import is_note_on
from partimento.core.types import MidiOut, ModelLike
from partimento.engine.driver import Driver
from partimento.engine.engine import Engine
from partimento.files import model as model_files
from partimento.files import pianoroll
from partimento.files.midifile import Track, tempo_of, write_tracks

Melody = Sequence[tuple[int, float]]
"""(MIDI pitch, length in beats) per note, played legato."""

CHORALE_TITLE = "Ein feste Burg ist unser Gott (BWV 302, soprano)"
CHORALE: Melody = (
    (74, 1),
    (74, 1),
    (74, 1),
    (69, 0.5),
    (71, 0.5),
    (73, 1),
    (74, 0.5),
    (73, 0.5),
    (71, 1),
    (69, 1),  # Ein feste Burg ist unser Gott
    (74, 1),
    (73, 1),
    (71, 1),
    (69, 1),
    (71, 1),
    (67, 0.5),
    (66, 0.5),
    (64, 1),
    (62, 1),  # ein gute Wehr und Waffen
    (62, 1),
    (69, 1),
    (71, 1),
    (69, 1),
    (68, 1),
    (69, 2),  # er hilft uns frei aus aller Not
    (62, 1),
    (69, 1),
    (71, 1),
    (73, 1),
    (74, 1),  # die uns jetzt hat betroffen
)
CHORALE_BPM = 84.0
FOLK_TITLE = "Alle meine Entchen (traditional)"
FOLK: Melody = (
    (60, 1),
    (62, 1),
    (64, 1),
    (65, 1),
    (67, 2),
    (67, 2),
    (69, 1),
    (69, 1),
    (69, 1),
    (69, 1),
    (67, 4),
)
FOLK_BPM = 100.0

SEED = 1
START = 1.0
"""Virtual seconds at the first note."""
GAP = 0.02
"""Seconds between a note's release and the next note (legato, as a keyboard is played)."""
VELOCITY = 80
MELODY_CHANNEL = 0
ANSWER_CHANNEL = 4
"""The answer's channel (5 in file terms), apart from the phrase's, so each has its sound."""
TICKS_PER_BEAT = 480
PROGRAMS = {"harmonize": 52, "continue": 73}
"""General MIDI programs (0-127): Choir Aahs for the chorale, Flute for the phrase..."""
ANSWER_PROGRAM = 71
"""...and Clarinet for the answer."""
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/local/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
)
GET_WAV = (
    "no WAV: install fluidsynth and a General MIDI soundfont (Debian/Ubuntu: apt-get "
    "install fluidsynth fluid-soundfont-gm; elsewhere give the .sf2 with --soundfont)"
)


class DemoError(PartimentoError):
    """Rendering failed; the message is one line."""


@dataclass
class Take:
    """One performance: what was played and what the engine sent, at virtual times."""

    mode: str
    title: str
    bpm: float
    played: list[tuple[float, MidiOut]]
    sent: list[tuple[float, MidiOut]] = field(default_factory=list)
    handle_seconds: list[float] = field(default_factory=list)
    """Engine.handle per note-on, time.perf_counter."""
    tick_seconds: list[float] = field(default_factory=list)
    prepare_seconds: list[float] = field(default_factory=list)
    """Engine.tick per call (the one that ends a phrase generates the answer)."""
    stats: dict = field(default_factory=dict)

    @property
    def last_release(self) -> float:
        return max(t for t, m in self.played if not is_note_on(m))


def events(melody: Melody, bpm: float, *, start: float = START) -> list[tuple[float, MidiOut]]:
    """The note-ons and note-offs a player would send for ``melody``, in time order."""
    beat = 60.0 / bpm
    out: list[tuple[float, MidiOut]] = []
    t = start
    for pitch, beats in melody:
        out.append((t, midi.note_on(MELODY_CHANNEL, pitch, VELOCITY)))
        out.append((t + beats * beat - GAP, midi.note_off(MELODY_CHANNEL, pitch)))
        t += beats * beat
    return out


def perform(engine: Engine, take: Take) -> Take:
    """Drive ``engine`` with ``take.played`` as the service does, on a virtual clock
    (:class:`~partimento.engine.driver.Driver`), until it asks for nothing; then stop."""
    driver = Driver(engine, timed=True)
    driver.play(take.played)
    take.stats = engine.stats()
    driver.stop()
    take.sent = driver.sent
    take.handle_seconds, take.tick_seconds = driver.handle_seconds, driver.tick_seconds
    take.prepare_seconds = driver.prepare_seconds
    return take


# --- MIDI files ---------------------------------------------------------------------------------


def write_take(
    path: Path, take: Take, names: dict[int, str], melody_name: str, programs: dict[int, int]
) -> list[str]:
    """A type-1 file: the melody's track, then one track per channel the engine sent on (in
    ``names``' order); the track names written."""
    tpb = TICKS_PER_BEAT
    start = take.played[0][0]

    def tick(t: float) -> int:
        return max(0, round((t - start) * take.bpm / 60 * tpb))

    parts = [(melody_name, MELODY_CHANNEL, take.played)]
    for channel, name in names.items():
        mine = [(t, m) for t, m in take.sent if len(m) > 1 and m[0] & 0x0F == channel]
        if mine:
            parts.append((name, channel, mine))
    tracks = [
        Track(name, channel, programs.get(channel, 0), messages=[(tick(t), m) for t, m in timed])
        for name, channel, timed in parts
    ]  # each in the order sent: a re-strike's note-off stays first
    write_tracks(path, tracks, ticks_per_beat=tpb, tempo_us=tempo_of(take.bpm))
    return [p[0] for p in parts]


# --- reporting ----------------------------------------------------------------------------------


def _processing(take: Take, what: str, longest_is: str, *, ahead: bool = False) -> str:
    """How quickly the engine answered, in a musician's words (measured on this computer with
    :func:`time.perf_counter` around each ``Engine.handle`` and ``Engine.tick``)."""
    ordered = sorted(take.handle_seconds) or [0.0]

    def pct(q: float) -> float:
        return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1] * 1e3

    slowest = take.prepare_seconds if ahead else take.tick_seconds  # ahead: off the note path
    longest = max(slowest, default=0.0) * 1e3
    return (
        f"  response time on this computer: {what} in {pct(50):.2f} ms typically, "
        f"{pct(99):.2f} ms at worst (99 in 100); {longest_is} {longest:.2f} ms"
    )


def _note_ons(
    timed: Sequence[tuple[float, MidiOut]], channel: int | None = None
) -> list[tuple[float, MidiOut]]:
    return [
        (t, m) for t, m in timed if is_note_on(m) and (channel is None or m[0] & 0x0F == channel)
    ]


def harmonized_at_once(take: Take) -> int:
    """How many melody note-ons got harmony notes struck at the same moment."""
    struck = {t for t, _ in _note_ons(take.sent)}
    return sum(1 for t, _ in _note_ons(take.played) if t in struck)


def _soundfont(given: Path | None) -> Path | None:
    if given is not None:
        return given if given.is_file() else None
    env = os.environ.get("PARTIMENTO_SOUNDFONT")
    candidates = ([env] if env else []) + list(SOUNDFONTS)
    return next((Path(c) for c in candidates if Path(c).is_file()), None)


def render_wavs(
    paths: Sequence[Path], soundfont: Path | None, say: Callable[[str], object]
) -> list[Path]:
    """Each MIDI file to a WAV beside it with fluidsynth; one line saying what is missing if
    fluidsynth or a soundfont is."""
    exe = shutil.which("fluidsynth")
    font = _soundfont(soundfont)
    if exe is None or font is None:
        missing = soundfont if soundfont is not None and font is None else None
        say(f"no WAV: soundfont {missing} not found" if missing else GET_WAV)
        return []
    wavs = []
    for mid in paths:
        wav = mid.with_suffix(".wav")
        try:
            done = subprocess.run(
                [exe, "-ni", "-q", "-g", "0.6", "-r", "44100", "-F", str(wav), str(font), str(mid)],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DemoError(f"fluidsynth failed on {mid}: {exc}") from exc
        if done.returncode != 0 or not wav.exists():
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise DemoError(f"fluidsynth failed on {mid} (exit {done.returncode}): {last}")
        wavs.append(wav)
        say(f"wrote {wav} (fluidsynth, {font.name})")
    return wavs


def draw_take(path: Path, take: Take, labels: dict[int, str], title: str, subtitle: str) -> Path:
    """A piano roll of the take (SVG): the player's notes on the first channel of ``labels``,
    then each channel Partimento sent on, each with its legend label, in that order."""
    channels = list(labels)
    played = pianoroll.notes_from_messages(take.played, {channels[0]: 0})
    sent = pianoroll.notes_from_messages(take.sent, {c: i for i, c in enumerate(channels) if i > 0})
    document = pianoroll.render(
        played + sent,
        pianoroll.parts(*labels.values()),
        title=title,
        subtitle=subtitle,
        bpm=take.bpm,
    )
    return pianoroll.write_svg(path, document)


# --- the demo -----------------------------------------------------------------------------------


def run_demo(
    out_dir: Path,
    *,
    wav: bool = False,
    seed: int = SEED,
    soundfont: Path | None = None,
    say: Callable[[str], object] = print,
    load_model: Callable[[str], ModelLike] | None = None,
    picture_copy: Path | None = None,
) -> int:
    """Both takes; files into ``out_dir`` (and the harmonize picture also to
    ``picture_copy``); what happened through ``say``. Returns 0."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cache: dict[str, ModelLike] = {}

    def load(name: str) -> ModelLike:
        if name not in cache:
            cache[name] = (load_model or model_files.load)(name)
        return cache[name]

    config = dataclasses.replace(Config(), continue_=ContinueConfig(channel=ANSWER_CHANNEL))
    written = []

    # harmonize
    engine = Engine(config, load, seed=seed)
    take = perform(
        engine, Take("harmonize", CHORALE_TITLE, CHORALE_BPM, events(CHORALE, CHORALE_BPM))
    )
    ch = config.harmonize.channels
    voices = {ch.alto: "Alto", ch.tenor: "Tenor", ch.bass: "Bass"}
    path = out_dir / "demo-harmonize.mid"
    tracks = write_take(
        path,
        take,
        voices,
        "Melody",
        dict.fromkeys((MELODY_CHANNEL, *voices), PROGRAMS["harmonize"]),
    )
    ons = _note_ons(take.sent)
    per_voice = ", ".join(
        f"{name.lower()} {len(_note_ons(take.sent, c))}" for c, name in voices.items()
    )
    melody_ons = len(_note_ons(take.played))
    say(
        f"harmonize: {take.title}, {melody_ons} notes at {take.bpm:g} BPM, model "
        f"{engine.model_names['harmonize']}, seed {seed}"
    )
    say(
        f"  notes in {take.stats['notes_in']}, notes out {len(ons)} ({per_voice}); "
        f"{harmonized_at_once(take)} of {melody_ons} melody notes harmonized at once; "
        f"the model chose the voices on {take.stats['harmony_steps']} sixteenths"
    )
    say(
        _processing(
            take, "the harmony of a melody note was ready", "the longest step of the voices took"
        )
    )
    picture = draw_take(
        out_dir / "demo-harmonize.svg",
        take,
        {MELODY_CHANNEL: "Melody (played)", **{c: n.capitalize() for c, n in voices.items()}},
        f"{take.title}, harmonized live",
        f"model {engine.model_names['harmonize']}, {take.bpm:g} BPM, seed {seed}: the melody "
        "as a player played it, the alto, tenor and bass Partimento answered",
    )
    say(f"  wrote {path} (tracks {', '.join(tracks)}) and {picture}")
    if picture_copy is not None:
        picture_copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(picture, picture_copy)
        say(f"  wrote {picture_copy} (the same picture)")
    written.append(path)

    # continue
    engine = Engine(dataclasses.replace(config, mode="continue"), load, seed=seed)
    take = perform(engine, Take("continue", FOLK_TITLE, FOLK_BPM, events(FOLK, FOLK_BPM)))
    answer = _note_ons(take.sent, ANSWER_CHANNEL)
    path = out_dir / "demo-continue.mid"
    tracks = write_take(
        path,
        take,
        {ANSWER_CHANNEL: "Answer"},
        "Phrase",
        {MELODY_CHANNEL: PROGRAMS["continue"], ANSWER_CHANNEL: ANSWER_PROGRAM},
    )
    say(
        f"continue: {take.title}, {len(_note_ons(take.played))} notes at {take.bpm:g} BPM, "
        f"model {engine.model_names['continue']}, seed {seed}"
    )
    if answer:
        offs = [
            t for t, m in take.sent if midi.is_note_off(m) and midi.channel(m) == ANSWER_CHANNEL
        ]
        span = max(offs, default=answer[-1][0]) - answer[0][0]
        beats = span * take.stats["bpm"] / 60
        say(
            f"  notes in {take.stats['notes_in']}, answer {len(answer)} notes over "
            f"{span:.1f} s ({beats / 4:.1f} bars at {take.stats['bpm']:g} BPM), starting "
            f"{answer[0][0] - take.last_release:.2f} s after the phrase's last note ended"
        )
    else:
        say(f"  notes in {take.stats['notes_in']}, answer 0 notes")
    say(
        _processing(
            take,
            "a note of the phrase was taken",
            "composing the answer (while listening on) took",
            ahead=True,
        )
    )
    picture = draw_take(
        out_dir / "demo-continue.svg",
        take,
        {MELODY_CHANNEL: "Phrase (played)", ANSWER_CHANNEL: "Answer (Partimento)"},
        f"{take.title}, answered",
        f"model {engine.model_names['continue']}, {take.bpm:g} BPM, seed {seed}: the phrase "
        "as a player played it, then Partimento's answer after the player stopped",
    )
    say(f"  wrote {path} (tracks {', '.join(tracks)}) and {picture}")
    written.append(path)

    if wav:
        render_wavs(written, soundfont, say)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(
        Path(args.output_dir),
        wav=args.wav,
        seed=args.seed,
        soundfont=Path(args.soundfont) if args.soundfont else None,
        picture_copy=Path(args.picture) if args.picture else None,
    )


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    d = subparsers.add_parser(
        "demo",
        parents=list(parents),
        help="play built-in melodies through the engine (no MIDI needed)",
        description="Play a chorale melody (harmonize mode) and a folk phrase (continue mode) "
        "through the live engine on a simulated clock, without MIDI ports, and write "
        "demo-harmonize.mid and demo-continue.mid, with a piano-roll picture of each "
        "(demo-harmonize.svg, demo-continue.svg).",
    )
    d.add_argument(
        "-o", "--output-dir", default=".", help="where the files go (default: the current folder)"
    )
    d.add_argument(
        "--wav",
        action="store_true",
        help="also render WAV files with fluidsynth and a General MIDI soundfont, when installed",
    )
    d.add_argument(
        "--soundfont",
        default=None,
        help="the .sf2 for --wav (default: $PARTIMENTO_SOUNDFONT, else the usual system places)",
    )
    d.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    d.add_argument(
        "--picture",
        default=None,
        metavar="FILE",
        help="also copy the harmonization's picture (SVG) to FILE, e.g. the README's "
        "docs/images/chorale-harmonized.svg",
    )
    d.set_defaults(func=cmd_demo)
    return d
