"""The ``partimento`` command line. Errors come out as one line and a non-zero exit code."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import IO

# numpy's BLAS (OpenBLAS) starts a thread per core that spins after every call: for the live
# harmonizer's small matrix products that kept a second core busy (measured: the daemon at 124 %
# of a core at 20 notes/s, 26 % with one thread). Set before anything imports numpy; OpenMP,
# which TensorFlow's kernels use for training, is left alone.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

log = logging.getLogger("partimento")

TRAIN_EXTRA = "pip install 'partimento[train]'"


class CliError(Exception):
    """A failure to report to the user in one line."""


def _needs_training_extra(what: str) -> None:
    import importlib.util

    missing = [m for m in ("tensorflow", "tf2onnx", "music21")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise CliError(f"{what} needs the training extra ({', '.join(missing)} missing): "
                       f"{TRAIN_EXTRA}")


# --- harmonize ----------------------------------------------------------------------------------

def read_melody(path: Path):
    if path.suffix.lower() in (".mid", ".midi", ".smf"):
        from partimento.files import midifile

        return midifile.read_melody(path)
    import importlib.util

    if importlib.util.find_spec("music21") is None:
        raise CliError(f"reading {path.suffix} files needs music21: {TRAIN_EXTRA} "
                       "(MIDI files need nothing more)")
    from partimento.files.score import read_melody as read_with_music21

    return read_with_music21(path)


def cmd_harmonize(args: argparse.Namespace) -> int:
    import numpy as np

    from partimento.files import midifile, model
    from partimento.core.players import harmonizer
    from partimento.core.music import rules

    melody = read_melody(Path(args.melody))
    soprano, position, fermata = melody.grid()
    _, mode = rules.estimate_key(soprano)
    name = args.model or ("bach" if args.live else "bach-offline")
    loaded = model.load(name)
    rng_seed = args.seed
    if args.live:
        settings = harmonizer.HarmonizerSettings(temperature=args.temperature or 1.0,
                                                 candidates=args.candidates)
        h = harmonizer.LiveHarmonizer(loaded.contract, loaded.run, settings=settings, mode=mode,
                                      seed=rng_seed, heads=loaded.heads)
        voices = harmonizer.harmonize(h, soprano, position, fermata)
    else:
        from partimento.core.players import gibbs
        from partimento.core.music.encoding import octave_shift_into, transpose_grid

        # a melody outside the model's soprano range is sung octaves away, then moved back
        shift = octave_shift_into(soprano, *loaded.contract.encoding["voice_ranges"]["soprano"])
        voices = gibbs.harmonize(transpose_grid(soprano, shift), position, fermata, mode,
                                 loaded.contract, loaded.run,
                                 temperature=args.temperature or gibbs.DEFAULT_TEMPERATURE,
                                 rng=np.random.default_rng(rng_seed),
                                 **({"iterations": args.iterations} if args.iterations else {}))
        voices = np.stack([soprano, *(transpose_grid(v, -shift) for v in voices[1:])])
    midifile.write_satb(args.output, melody, voices)
    print(f"{args.output}: {len(melody.notes)} melody notes harmonized in four voices "
          f"({'live' if args.live else 'offline'} model {loaded.contract.name}, "
          f"{'minor' if mode else 'major'})")
    return 0


# --- training -----------------------------------------------------------------------------------

def _config_flags(p: argparse.ArgumentParser) -> None:
    from partimento.training.config import TrainConfig

    for f in fields(TrainConfig):
        if f.name == "style":
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default)
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f"(default {f.default})")
        else:
            p.add_argument(flag, type=kind, default=None, metavar=kind.__name__.upper(),
                           help=f"(default {f.default!r} or the style's own)")


def cmd_train(args: argparse.Namespace) -> int:
    _needs_training_extra("partimento train")
    from partimento.training.config import TrainConfig, resolve
    from partimento.training.train import train

    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "style"}
    cfg = resolve(args.style, Path(args.config) if args.config else None, overrides)
    run_dir = Path(args.run_dir or f"runs/{args.style}")
    train(cfg, run_dir, resume=args.resume)
    if not args.export:
        print(f"trained {args.style}: run folder {run_dir}; next: partimento export {run_dir} "
              f"-o exported_models/{args.style}")
        return 0
    from partimento.training.export import export

    out = Path(args.export if "/" in args.export else f"exported_models/{args.export}")
    contract = export(run_dir, out)
    print(f"trained {args.style} (run folder {run_dir}) and exported it to {out}: play it with "
          f"[continue] model = \"{out}\" (or set/style over MQTT), or partimento sample "
          f"{out} -o sample.mid" if contract.kind == "continuation" else
          f"trained {args.style} (run folder {run_dir}) and exported it to {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _needs_training_extra("partimento export")
    from partimento.training.export import export

    contract = export(Path(args.run), Path(args.output), name=args.name)
    print(f"{args.output}: model.onnx and model.json for style {contract.style} "
          f"({contract.kind}); ONNX parity "
          f"{contract.training['parity_max_logit_difference']:.1e}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    _needs_training_extra("partimento evaluate")
    from partimento.training.evaluate import evaluate

    evaluate(args.model, write=not args.no_write, limit=args.limit, seed=args.seed)
    return 0


# --- MIDI ports ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _native_stderr_silenced():
    """Keep what the C MIDI libraries print while probing (``ALSA lib ...``, ``Cannot connect to
    server socket``) off the terminal: their reasons come back in the one-line error."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cmd_ports(args: argparse.Namespace) -> int:
    from partimento.config import RTMIDI_APIS
    from partimento.live.midi_io import DEFAULT_BACKEND, backend_name, list_ports

    if args.api is None:
        backend = backend_name()
    elif args.api == "auto":
        backend = DEFAULT_BACKEND
    else:
        backend = f"{DEFAULT_BACKEND}/{RTMIDI_APIS[args.api]}"
    with _native_stderr_silenced():
        inputs, outputs = list_ports(backend)
    for name in inputs:
        print(f"input\t{name}")
    for name in outputs:
        print(f"output\t{name}")
    if not inputs and not outputs:
        print(f"no MIDI ports ({backend})", file=sys.stderr)
    return 0


# --- the daemon and the demo --------------------------------------------------------------------

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "partimento.toml"
"""``partimento run`` reads this when it is there and no ``--config`` is given."""


class _StartupStderr:
    """Holds what goes to stderr (log lines, and what the C MIDI libraries print, such as
    ``ALSA lib ... failed`` while rtmidi tries a backend) until the daemon is ready.

    :meth:`release` (the daemon is up) writes out what was held, in order, and gives stderr
    back. A start that fails drops it, so the user reads one line: the error (its reason
    already names the file, key or port). ``hold=False`` (``-v``) holds nothing.
    """

    def __init__(self, *, hold: bool) -> None:
        self._hold = hold
        self._saved: int | None = None
        self._file: IO[bytes] | None = None

    def __enter__(self) -> _StartupStderr:
        if self._hold:
            import tempfile

            sys.stderr.flush()
            self._file = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        return self

    def release(self, *, show: bool = True) -> None:
        if self._saved is None or self._file is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        if show:
            self._file.seek(0)
            held = self._file.read()
            out = getattr(sys.stderr, "buffer", None)
            if held and out is not None:
                with contextlib.suppress(OSError, ValueError):  # never stop the daemon
                    out.write(held)
                    sys.stderr.flush()
        self._file.close()

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.release(show=kind is None)


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from partimento.config import Config, load
    from partimento.engine.engine import EngineError

    path = Path(args.config) if args.config else DEFAULT_CONFIG
    if args.config or DEFAULT_CONFIG.is_file():
        config = load(path)
    else:
        config, path = Config(), None
    level = config.logging_level
    logging.getLogger().setLevel(min(level, logging.INFO) if args.verbose else level)
    try:
        from partimento.live.service import serve
    except ImportError as exc:  # python-rtmidi, or the ALSA library it links, is missing
        raise CliError(f"partimento run needs python-rtmidi and its MIDI libraries: "
                       f"{exc}") from exc

    held = _StartupStderr(hold=not args.verbose)  # a failure to start is one line

    def ready(r) -> None:
        held.release()
        print(r.line, flush=True)

    try:
        with held:
            return asyncio.run(serve(config, config_path=path, on_ready=ready))
    except EngineError as exc:
        raise CliError(str(exc)) from exc


def cmd_demo(args: argparse.Namespace) -> int:
    from partimento.commands.demo import DemoError, run_demo

    try:
        return run_demo(Path(args.output_dir), wav=args.wav, seed=args.seed,
                        soundfont=Path(args.soundfont) if args.soundfont else None)
    except DemoError as exc:
        raise CliError(str(exc)) from exc


# --- entry point --------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    from partimento.config import RTMIDI_APIS
    from partimento.training.config import STYLES

    p = argparse.ArgumentParser(prog="partimento", description="A real-time MIDI accompanist: "
                                "live four-voice chorale harmonization and melody continuation.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    h = sub.add_parser("harmonize", help="harmonize a melody file in four voices",
                       description="Harmonize a melody (MIDI, MusicXML, ABC or **kern; the top "
                       "part if several) and write a MIDI file with tracks Soprano, Alto, Tenor "
                       "and Bass, the soprano being the melody unchanged.")
    h.add_argument("melody", help="the melody file")
    h.add_argument("-o", "--output", required=True, help="the MIDI file to write")
    h.add_argument("--live", action="store_true", help="use the causal live model and the "
                   "daemon's own stepping code (default: the offline model, pseudo-Gibbs)")
    h.add_argument("--temperature", type=float, default=None, help="sampling temperature "
                   "(default 1.0 live, 0.5 offline)")
    h.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable result")
    h.add_argument("--model", default=None, help="model name or folder (default bach for "
                   "--live, else bach-offline)")
    h.add_argument("--candidates", type=int, default=8, help="live: chords sampled per step, "
                   "the best by voice leading is kept (default 8)")
    h.add_argument("--iterations", type=int, default=None, help="offline: pseudo-Gibbs "
                   "iterations (default: the sampler's own, scaled to the melody)")
    h.set_defaults(func=cmd_harmonize)

    t = sub.add_parser("train", help="train a style (needs the training extra)",
                       description="Train a style. Defaults per style, then --config FILE.toml "
                       "([train] table), then these flags.")
    t.add_argument("style", choices=STYLES)
    t.add_argument("--config", help="a TOML file with a [train] table of the keys below")
    t.add_argument("--run-dir", help="the run folder (default runs/STYLE)")
    t.add_argument("--resume", action="store_true", help="go on with an interrupted run")
    t.add_argument("--export", metavar="NAME", help="then export the run as "
                   "exported_models/NAME (or to the folder NAME if it contains a /), ready "
                   "for partimento run, sample and evaluate")
    _config_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="export a run as model.onnx + model.json",
                       description="Convert a run to an ONNX step model and its contract, after "
                       "checking that the ONNX model reproduces the Keras one.")
    e.add_argument("run", help="the run folder")
    e.add_argument("-o", "--output", required=True, help="the model folder to write")
    e.add_argument("--name", help="the model's name (default: the folder's name)")
    e.set_defaults(func=cmd_export)

    v = sub.add_parser("evaluate", help="evaluate a model on the test split",
                       description="NLL and accuracy on the test split next to a baseline; for "
                       "bach models also harmonize every test soprano and measure voice "
                       "leading next to Bach's own chorales. Figures go into model.json.")
    v.add_argument("model", help="model name or folder")
    v.add_argument("--limit", type=int, default=0, help="only the first N test pieces")
    v.add_argument("--seed", type=int, default=0, help="random seed of the sampling that "
                   "harmonizes the test sopranos (default 0)")
    v.add_argument("--no-write", action="store_true", help="print, but leave model.json as is")
    v.set_defaults(func=cmd_evaluate)

    m = sub.add_parser("ports", help="list MIDI input and output ports",
                       description="List the MIDI backend's ports, one a line: 'input<TAB>NAME' "
                       "(ports Partimento can read from) then 'output<TAB>NAME'. The backend is "
                       "--api, else the MIDO_BACKEND environment variable (e.g. "
                       "mido.backends.rtmidi/UNIX_JACK), else the first that starts.")
    m.add_argument("--api", choices=("auto", *RTMIDI_APIS), default=None,
                   help="python-rtmidi's backend, as midi.api in the config file")
    m.set_defaults(func=cmd_ports)

    r = sub.add_parser("run", help="run the live daemon on MIDI ports",
                       description="Run the daemon: read the melody from the MIDI input, play "
                       "harmony or answers on the MIDI output, until SIGINT or SIGTERM (which "
                       "release every sounding note). Prints one ready line when the models are "
                       "loaded and the ports open. The backend is midi.api, else MIDO_BACKEND.")
    r.add_argument("--config", help="the TOML configuration (default: config/partimento.toml "
                   "beside the package if there, else the built-in defaults)")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="play built-in melodies through the engine (no MIDI needed)",
                       description="Play a chorale melody (harmonize mode) and a folk phrase "
                       "(continue mode) through the live engine on a simulated clock, without "
                       "MIDI ports, and write demo-harmonize.mid and demo-continue.mid.")
    d.add_argument("-o", "--output-dir", default=".", help="where the files go (default: the "
                   "current folder)")
    d.add_argument("--wav", action="store_true", help="also render WAV files with fluidsynth "
                   "and a General MIDI soundfont, when installed")
    d.add_argument("--soundfont", default=None, help="the .sf2 for --wav (default: "
                   "$PARTIMENTO_SOUNDFONT, else the usual system places)")
    d.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    d.set_defaults(func=cmd_demo)

    from partimento.commands import service as install
    from partimento.training import compare
    from partimento.commands import sample

    install.add_parser(sub)
    sample.add_parser(sub)
    compare.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from partimento.config import ConfigError as DaemonConfigError
    from partimento.core.music.encoding import EncodingError
    from partimento.core.music.melody import MelodyError
    from partimento.core.players.sampling import SamplingError
    from partimento.files.model import ModelError
    try:
        from partimento.live.midi_io import MidiError
    except ImportError:  # python-rtmidi or its ALSA library is missing: only MIDI commands care
        MidiError = CliError
    from partimento.training.config import ConfigError
    from partimento.training.export import ExportError

    known = (CliError, ModelError, MelodyError, ConfigError, EncodingError, SamplingError,
             ExportError, DaemonConfigError, MidiError, FileNotFoundError, FileExistsError,
             PermissionError)
    try:
        return int(args.func(args) or 0)
    except known as exc:
        print(f"partimento: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("partimento: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"partimento: error: {type(exc).__name__}: {first} (run with -v for details)",
              file=sys.stderr)
        return 1

if __name__ == "__main__":
    sys.exit(main())
