"""``partimento service install [--user]``: the systemd unit and the config for this installation.

The unit templates (``systemd/`` in the source tree) and the default config travel inside the
package (``partimento.units``, ``partimento.defaults``), so a plain ``pip install`` or a wheel
has them as an editable install from a clone does (:mod:`partimento.files.locations`). Nothing
here needs a POSIX-only module at import time (``pwd`` is imported where it is used), so
``partimento --help`` runs on Windows too.

What it does:

* renders the template: ``ExecStart=`` runs this installation's ``partimento`` program (the one
  in the running interpreter's scripts folder) with ``run --config CONFIG``; for the system
  unit, ``ProtectHome=read-only`` instead of ``yes`` when the installation or the config lives
  under /home, /root or /run/user (``yes`` would hide it);
* copies ``config/partimento.toml`` to CONFIG if nothing is there yet, never overwriting
  (system: /etc/partimento/partimento.toml; ``--user``: $XDG_CONFIG_HOME/partimento/, by
  default ~/.config/partimento/);
* writes the unit (system: /etc/systemd/system/partimento.service; ``--user``:
  $XDG_CONFIG_HOME/systemd/user/partimento-user.service), replacing an older one;
* prints the commands that enable and start it.

``--dry-run`` prints the unit and the paths and writes nothing. ``--root DIR`` writes every file
under DIR instead of / (staging for a package; the unit names the real paths). Every failure is
an :class:`InstallError` with a one-line message.

Wiring into ``daemon/cli.py`` (inside ``parser()``, after the other subcommands)::

    from partimento.commands import service as install
    install.add_parser(sub)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import sys
import sysconfig
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from partimento.core.errors import PartimentoError
from partimento.files import locations

SYSTEM_UNIT = "partimento.service"
USER_UNIT = "partimento-user.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_CONFIG = Path("/etc/partimento/partimento.toml")
SERVICE_USER = "partimento"
HOME_ROOTS = (Path("/home"), Path("/root"), Path("/run/user"))
"""What ``ProtectHome=yes`` hides from a system service."""

HEADER = (
    "# Written by `partimento service install`; running it again replaces this file. For\n"
    "# changes of your own use `systemctl edit` (a drop-in), which survives that.\n"
)

Say = Callable[[str], object]


class InstallError(PartimentoError):
    """A failure to report to the user in one line."""


# --- finding things -----------------------------------------------------------------------------


def template_path(user: bool) -> Path:
    """The unit template for a system (``user=False``) or ``--user`` service."""
    return locations.unit_templates() / (USER_UNIT if user else SYSTEM_UNIT)


def config_template() -> Path:
    """The config copied for the service: the shipped default, every key documented."""
    return locations.shipped_config()


def package_folders() -> list[Path]:
    """The installed package and its shipped models (apart in an editable install)."""
    return [locations.shipped("partimento"), locations.shipped_models()]


def read_template(user: bool) -> str:
    path = template_path(user)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InstallError(
            f"no unit template at {path}: this installation is incomplete "
            "(reinstall partimento), or follow docs/SERVICE.md by hand"
        ) from None


def partimento_executable() -> Path:
    """This installation's ``partimento`` program: in the running interpreter's scripts folder
    (a venv's ``bin/``), else ``sys.argv[0]`` when it is the program, else on ``PATH`` (not a
    pyenv-style shim, which needs a login shell's environment)."""
    candidates = [Path(sysconfig.get_path("scripts")) / "partimento"]
    if Path(sys.argv[0]).name == "partimento":
        candidates.append(Path(sys.argv[0]))
    found = shutil.which("partimento")
    if found and "shims" not in Path(found).parts:
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path.absolute()
    raise InstallError(
        "cannot find this installation's partimento program (looked in "
        f"{candidates[0].parent}); give it with --exec PATH"
    )


def config_home(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME`` when absolute, else ``$HOME/.config``."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg)
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".config"


def in_home(path: Path) -> bool:
    """Whether ``path`` is under a folder ``ProtectHome=yes`` hides."""
    return any(path == root or root in path.parents for root in HOME_ROOTS)


def installation_paths(executable: Path, config: Path) -> list[Path]:
    """What the service must be able to read: the program, its environment, the interpreter,
    the package and its models, the config."""
    return [
        executable,
        executable.resolve(),
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(sys.executable).resolve(),
        *package_folders(),
        config,
    ]


def closed_folder(path: Path) -> Path | None:
    """The first existing folder on the way to ``path`` that other users cannot enter."""
    for folder in reversed([path, *path.parents]):
        try:
            mode = folder.stat().st_mode
        except OSError:
            return None
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return folder
    return None


# --- rendering ----------------------------------------------------------------------------------


def quote(arg: str) -> str:
    """One command-line word for ``ExecStart=``: ``%`` and ``$`` doubled (no specifiers, no
    variables), double quotes around it when it has a space, quote or backslash."""
    word = arg.replace("%", "%%").replace("$", "$$")
    if re.search(r"[\s\"'\\;]", word):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def exec_start(executable: Path, config: Path) -> str:
    """The ``ExecStart=`` value: ``PROGRAM run --config CONFIG``."""
    return f"{quote(str(executable))} run --config {quote(str(config))}"


def set_directive(text: str, key: str, value: str) -> str:
    """``text`` with its one ``key=`` line set to ``key=value``."""
    pattern = re.compile(rf"^{re.escape(key)}=.*$", re.MULTILINE)
    found = len(pattern.findall(text))
    if found != 1:
        raise InstallError(f"the unit template has {found} {key}= lines, not 1")
    return pattern.sub(lambda _: f"{key}={value}", text)


def render_unit(
    template: str,
    *,
    executable: Path,
    config: Path,
    protect_home: str | None = None,
    documentation: str | None = None,
) -> str:
    """The unit for ``executable`` and ``config``; ``protect_home`` and ``documentation``
    replace those lines when given."""
    text = HEADER + set_directive(template, "ExecStart", exec_start(executable, config))
    if protect_home is not None:
        text = set_directive(text, "ProtectHome", protect_home)
    if documentation is not None:
        text = set_directive(text, "Documentation", documentation.replace("%", "%%"))
    return text


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What an install writes, with the real paths (``root`` is where they are written)."""

    user: bool
    unit_name: str
    unit_path: Path
    unit_text: str
    config_path: Path
    executable: Path
    root: Path = Path("/")
    warnings: list[str] = field(default_factory=list)

    def target(self, path: Path) -> Path:
        """Where ``path`` is written: under ``root``."""
        return self.root / path.relative_to(path.anchor)

    @property
    def service(self) -> str:
        """The name for ``systemctl``: the unit's name without ``.service``."""
        return self.unit_name.removesuffix(".service")


def plan(
    *,
    user: bool,
    config: Path | None = None,
    unit_dir: Path | None = None,
    executable: Path | None = None,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """Work out an install: paths (defaults as the module says), the rendered unit, warnings."""
    env = os.environ if environ is None else environ
    base = config_home(env) if user else None
    config = (
        _absolute(config)
        if config
        else (base / "partimento" / "partimento.toml" if base else SYSTEM_CONFIG)
    )
    unit_dir = (
        _absolute(unit_dir)
        if unit_dir
        else (base / "systemd" / "user" if base else SYSTEM_UNIT_DIR)
    )
    executable = _absolute(executable) if executable else partimento_executable()
    if not (executable.is_file() and os.access(executable, os.X_OK)):
        raise InstallError(f"{executable}: not an executable program")
    needed = installation_paths(executable, config)
    protect_home = None if user else ("read-only" if any(map(in_home, needed)) else "yes")
    text = render_unit(
        read_template(user), executable=executable, config=config, protect_home=protect_home
    )
    name = USER_UNIT if user else SYSTEM_UNIT
    warnings = [] if user else _system_warnings(needed)
    return Plan(
        user,
        name,
        unit_dir / name,
        text,
        config,
        executable,
        _absolute(root) if root else Path("/"),
        warnings,
    )


def _absolute(path: Path) -> Path:
    return Path(path).expanduser().absolute()


def _system_warnings(needed: Iterable[Path]) -> list[str]:
    closed = sorted({f for f in map(closed_folder, needed) if f is not None})
    return [
        f"{folder} is closed to other users, so the {SERVICE_USER} user cannot read the "
        "installation through it: install into a shared place such as /opt/partimento, or "
        f"open it (chmod o+x {folder})"
        for folder in closed
    ]


def follow_up(p: Plan) -> list[str]:
    """The commands to run after the files are written."""
    if p.user:
        return [
            f"systemctl --user daemon-reload && systemctl --user enable --now {p.service}",
            f"systemctl --user status {p.service}",
            f"journalctl --user -u {p.service} -f",
            'loginctl enable-linger "$USER"   # optional: start at boot, without a login',
        ]
    commands = []
    if not _user_exists(SERVICE_USER):
        commands.append(
            f"useradd --system --user-group --home-dir /nonexistent "
            f"--shell /usr/sbin/nologin {SERVICE_USER}"
        )
    return [
        *commands,
        f"systemctl daemon-reload && systemctl enable --now {p.service}",
        f"systemctl status {p.service}",
        f"journalctl -u {p.service} -f",
    ]


def _user_exists(name: str) -> bool:
    import pwd  # POSIX only: imported here, so the module loads on Windows

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- writing ------------------------------------------------------------------------------------


def install(p: Plan, *, dry_run: bool = False, say: Say = print) -> int:
    """Write (or with ``dry_run`` only show) the config and the unit, then say what to run."""
    for warning in p.warnings:
        say(f"warning: {warning}")
    if dry_run:
        _show(p, say)
    else:
        _write_config(p, say)
        _write_unit(p, say)
    say("then run:" if not dry_run else "after installing, run:")
    for command in follow_up(p):
        say(f"  {command}")
    return 0


def _show(p: Plan, say: Say) -> None:
    say(f"# {p.target(p.unit_path)} (would write)")
    say(p.unit_text.rstrip("\n"))
    config = p.target(p.config_path)
    say(
        f"# {config} "
        + ("exists, would be kept" if config.exists() else f"(would copy {config_template()})")
    )


def _write_config(p: Plan, say: Say) -> None:
    path = p.target(p.config_path)
    if path.exists():
        say(f"kept {path} (exists; never overwritten)")
        return
    template = config_template()
    try:
        text = template.read_bytes()
    except FileNotFoundError:
        raise InstallError(
            f"no config template at {template}; write {path} yourself "
            "(an empty file means every default)"
        ) from None
    _guarded(path, lambda: _create(path, text, 0o600 if p.user else 0o644, exclusive=True))
    say(f"wrote {path} (from {template})")


def _write_unit(p: Plan, say: Say) -> None:
    path = p.target(p.unit_path)
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    if old == p.unit_text:
        say(f"unchanged {path}")
        return
    _guarded(path, lambda: _create(path, p.unit_text.encode(), 0o644, exclusive=False))
    say(f"{'replaced' if old is not None else 'wrote'} {path}")


def _create(path: Path, data: bytes, mode: int, *, exclusive: bool) -> None:
    """Write ``data`` to ``path`` with ``mode``: exclusively (never over a file), or through a
    temporary file renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path if exclusive else path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(target, flags, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(target, mode)  # whatever the umask took away
    if not exclusive:
        os.replace(target, path)


def _guarded(path: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except FileExistsError:
        raise InstallError(f"{path} appeared while installing; not overwritten") from None
    except PermissionError:
        raise InstallError(
            f"cannot write {path}: permission denied (run as root, e.g. sudo "
            f"{sys.argv[0]} service install, or use --user)"
        ) from None
    except OSError as exc:
        raise InstallError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- command line -------------------------------------------------------------------------------


def cmd_service_install(args: argparse.Namespace) -> int:
    """``partimento service install``."""
    p = plan(
        user=args.user,
        config=_opt_path(args.config),
        unit_dir=_opt_path(args.unit_dir),
        executable=_opt_path(args.exec_path),
        root=_opt_path(args.root),
    )
    return install(p, dry_run=args.dry_run)


def _opt_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def add_parser(
    subparsers: argparse._SubParsersAction, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    """Add ``service`` (with ``install``) to ``partimento``'s subcommands; returns ``service``'s
    parser. The handler is set as ``func``, as for the other subcommands."""
    s = subparsers.add_parser(
        "service",
        parents=list(parents),
        help="run Partimento as a systemd service",
        description="Set Partimento up as a systemd service; see docs/SERVICE.md.",
    )
    sub = s.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    i = sub.add_parser(
        "install",
        parents=list(parents),
        help="write the systemd unit and the config",
        description="Write the systemd unit for this installation (ExecStart= "
        "runs its partimento program) and copy the default partimento.toml to the "
        "config path unless a file is there, then print the commands that "
        "enable and start it. System service: /etc/systemd/system/"
        "partimento.service and /etc/partimento/partimento.toml (as root). "
        "--user: ~/.config/systemd/user/partimento-user.service and "
        "~/.config/partimento/partimento.toml.",
    )
    i.add_argument(
        "--user",
        action="store_true",
        help="a service of your own, for "
        "systemctl --user (default: a system service running as user partimento)",
    )
    i.add_argument(
        "--config",
        help="the config file the service reads (the default partimento.toml is "
        "copied there if missing; never overwritten)",
    )
    i.add_argument(
        "--unit-dir",
        help="where the unit goes (default /etc/systemd/system, or "
        "~/.config/systemd/user with --user)",
    )
    i.add_argument(
        "--exec",
        dest="exec_path",
        help="the partimento program to run (default: this installation's)",
    )
    i.add_argument(
        "--root",
        help="write every file under this folder instead of / (staging; "
        "the unit names the real paths)",
    )
    i.add_argument(
        "--dry-run", action="store_true", help="print the unit and the paths, write nothing"
    )
    i.set_defaults(func=cmd_service_install)
    return s
