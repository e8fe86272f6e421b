"""systemd integration: the units pass ``systemd-analyze verify``, the notify protocol reaches a
real ``AF_UNIX`` datagram socket standing in for systemd, the watchdog pings from the event loop
(and stops while it is blocked), and ``partimento service install`` writes what it should."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import shutil
import socket
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from partimento.commands import service as install
from partimento.commands.service import InstallError
from partimento.live import sdnotify
from partimento.live.sdnotify import Notifier

from support.project import ROOT, require

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
PROBLEM_WORDS = ("Unknown", "Invalid", "Failed to parse", "ignoring", "not executable")


# --- a stand-in for systemd's notify socket -----------------------------------------------------


class Listener:
    """A bound ``AF_UNIX`` datagram socket; ``address`` is what ``NOTIFY_SOCKET`` would hold."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + address[1:].encode() if address.startswith("@") else address)
        self.sock.settimeout(2.0)

    def receive(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def raw(self) -> bytes:
        return self.sock.recv(4096)

    def nothing_waiting(self) -> bool:
        self.sock.settimeout(0.05)
        try:
            self.sock.recv(4096)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(2.0)
        return False

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)


def _short_dir(tmp_path: Path) -> Path:
    """``tmp_path``, or a shorter folder when a socket path there would pass the 107-byte
    limit of ``sun_path``."""
    if len(str(tmp_path / "notify.sock")) < 100:
        return tmp_path
    return Path(tempfile.mkdtemp(prefix="sdn-"))


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    folder = _short_dir(tmp_path)
    lst = Listener(str(folder / "notify.sock"))
    yield lst
    lst.close()
    if folder != tmp_path:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    lst = Listener(f"@partimento-test-{os.getpid()}-{secrets.token_hex(4)}")
    yield lst
    lst.close()


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# --- (a) systemd-analyze verify -----------------------------------------------------------------


def _executable() -> Path:
    """A program that exists, for ExecStart=: this installation's partimento if found."""
    try:
        return install.partimento_executable()
    except InstallError:
        return Path(sys.executable)


def _verify(unit: Path, *, user: bool, tmp_path: Path) -> tuple[int, list[str]]:
    """``systemd-analyze verify`` on ``unit``: exit code and the lines that are problems."""
    require(
        SYSTEMD_ANALYZE is not None,
        "systemd-analyze is not installed (Debian/Ubuntu: apt-get install systemd)",
    )
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    command = [SYSTEMD_ANALYZE, *(["--user"] if user else []), "verify", "--man=no", str(unit)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    lines = (done.stdout + done.stderr).splitlines()
    problems = [
        line for line in lines if unit.name in line or any(word in line for word in PROBLEM_WORDS)
    ]
    return done.returncode, problems


def _rendered(tmp_path: Path, user: bool, executable: Path | None = None) -> Path:
    p = install.plan(
        user=user,
        config=tmp_path / "etc" / "partimento.toml",
        unit_dir=tmp_path / "units",
        executable=executable or _executable(),
        environ={"HOME": str(tmp_path)},
    )
    unit = tmp_path / "units" / p.unit_name
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(p.unit_text)
    return unit


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path, user: bool) -> None:
    code, problems = _verify(_rendered(tmp_path, user), user=user, tmp_path=tmp_path)
    assert code == 0, problems
    assert problems == []


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_shipped_template_only_lacks_its_example_program(tmp_path: Path, user: bool) -> None:
    """The files in systemd/ as they are: the only complaint is that the example ExecStart=
    program (/opt/partimento/.venv/bin/partimento) is not installed here."""
    code, problems = _verify(install.template_path(user), user=user, tmp_path=tmp_path)
    assert all(
        "/opt/partimento/.venv/bin/partimento is not executable" in line for line in problems
    ), problems
    assert code in (0, 1)


def test_verify_check_catches_an_unknown_directive(tmp_path: Path) -> None:
    """The problem filter above does see what verify reports (it exits 0 on unknown keys)."""
    unit = _rendered(tmp_path, False)
    unit.write_text(unit.read_text() + "\n[Service]\nProtectEverything=yes\n")
    _, problems = _verify(unit, user=False, tmp_path=tmp_path)
    assert any("ProtectEverything" in line for line in problems)


def test_paths_with_spaces_and_percent_survive_exec_start(tmp_path: Path) -> None:
    odd = tmp_path / "with space 100%"
    odd.mkdir()
    (odd / "partimento").symlink_to(_executable())
    code, problems = _verify(
        _rendered(tmp_path, False, executable=odd / "partimento"), user=False, tmp_path=tmp_path
    )
    assert code == 0, problems
    assert problems == []


def test_units_have_what_the_issue_asks() -> None:
    system = install.template_path(False).read_text()
    user = install.template_path(True).read_text()
    for text in (system, user):
        for line in (
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=10",
            "Restart=on-failure",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "NoNewPrivileges=yes",
            "Environment=PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONFAULTHANDLER=1",
        ):
            assert f"\n{line}\n" in text, line
    for line in (
        "User=partimento",
        "SupplementaryGroups=audio",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "DeviceAllow=char-alsa rw",
        "CapabilityBoundingSet=",
        "WantedBy=multi-user.target",
    ):
        assert f"\n{line}\n" in system, line
    assert "\nWantedBy=default.target\n" in user
    assert "\nUser=" not in user


# --- (b) the notify protocol --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_messages_reach_the_socket(
    kind: str, listener: Listener, abstract_listener: Listener
) -> None:
    lst = listener if kind == "path" else abstract_listener
    n = Notifier(environ={"NOTIFY_SOCKET": lst.address})
    assert n.enabled
    assert n.ready("ready: harmonize\non bach")
    assert lst.receive() == {"READY": "1", "STATUS": "ready: harmonize on bach"}
    assert n.status("playing")
    assert lst.receive() == {"STATUS": "playing"}
    assert n.watchdog()
    assert lst.raw() == b"WATCHDOG=1"
    before = _monotonic_usec()
    assert n.reloading()
    fields = lst.receive()
    after = _monotonic_usec()
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after
    assert n.stopping()
    assert lst.raw() == b"STOPPING=1"
    n.close()


def test_notify_socket_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, listener: Listener
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    assert Notifier().ready()
    assert listener.raw() == b"READY=1"


def test_sender_is_this_process(listener: Listener) -> None:
    """What ``NotifyAccess=main`` checks: the kernel's credentials carry our PID."""
    listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    Notifier(listener.address).watchdog()
    _, ancillary, _, _ = listener.sock.recvmsg(4096, socket.CMSG_SPACE(12))
    ((_, kind, data),) = ancillary
    assert kind == socket.SCM_CREDENTIALS
    assert struct.unpack("3i", data[:12])[0] == os.getpid()


def test_socket_is_close_on_exec(listener: Listener) -> None:
    n = Notifier(listener.address)
    n.watchdog()
    assert n._socket is not None and not n._socket.get_inheritable()
    assert os.get_inheritable(n._socket.fileno()) is False


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    n = Notifier()
    assert not n.enabled
    assert [n.ready("x"), n.reloading(), n.stopping(), n.watchdog(), n.status("y")] == [False] * 5
    assert n._socket is None
    assert n.watchdog_interval() is None


def test_socket_gone_is_logged_once_and_never_raises(
    listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier(listener.address)
    assert n.ready()
    listener.close()
    with caplog.at_level(logging.DEBUG, logger="partimento.live.sdnotify"):
        assert not n.watchdog()
        assert not n.stopping()
        assert not n.status("still here")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()


def test_unsupported_address_is_disabled(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="partimento.live.sdnotify"):
        n = Notifier("vsock:2:1234")
    assert not n.enabled and not n.ready()
    assert "unsupported NOTIFY_SOCKET" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "3000000"}, 1.5),
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "ten"}, None),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "me"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None, listener: Listener) -> None:
    assert sdnotify.watchdog_interval(env) == expected
    assert (
        Notifier(environ={"NOTIFY_SOCKET": listener.address, **env}).watchdog_interval() == expected
    )


def test_watchdog_interval_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 5.0


def test_reload_context_sends_reloading_then_ready(listener: Listener) -> None:
    n = Notifier(listener.address)
    with n.reload("reloaded"):
        assert listener.receive()["RELOADING"] == "1"
    assert listener.receive() == {"READY": "1", "STATUS": "reloaded"}
    with pytest.raises(ValueError, match="bad key"), n.reload():
        listener.receive()
        raise ValueError("bad key")
    fields = listener.receive()
    assert fields["READY"] == "1" and "reload failed" in fields["STATUS"]


def test_reload_with_never_raises(listener: Listener) -> None:
    n = Notifier(listener.address)

    async def good() -> None:
        await asyncio.sleep(0)

    def bad() -> None:
        raise RuntimeError("config: no such file")

    assert asyncio.run(sdnotify.reload_with(n, good)) is True
    assert [listener.receive().get(k) for k in ("RELOADING", "READY")] == ["1", "1"]
    assert asyncio.run(sdnotify.reload_with(n, bad)) is False
    assert "RELOADING" in listener.receive()
    assert "config: no such file" in listener.receive()["STATUS"]


def test_scheduled_reloads_run_one_after_the_other(listener: Listener) -> None:
    n = Notifier(listener.address)
    spans: list[tuple[float, float]] = []

    async def reload() -> None:
        start = time.monotonic()
        await asyncio.sleep(0.05)
        spans.append((start, time.monotonic()))

    async def main() -> list[bool]:
        tasks = [sdnotify.schedule_reload(n, reload), sdnotify.schedule_reload(n, reload)]
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == [True, True]
    assert spans[0][1] <= spans[1][0]
    order = [next(iter(listener.receive())) for _ in range(4)]
    assert order == ["RELOADING", "READY", "RELOADING", "READY"]


# --- (c) the watchdog task ----------------------------------------------------------------------


def _collect(lst: Listener, stamps: list[float], done: threading.Event) -> None:
    lst.sock.settimeout(0.05)
    while not done.is_set():
        try:
            data = lst.sock.recv(64)
        except TimeoutError:
            continue
        if data == b"WATCHDOG=1":
            stamps.append(time.monotonic())


def test_watchdog_pings_from_the_loop_and_stops_while_it_is_blocked(listener: Listener) -> None:
    interval = 0.1
    n = Notifier(listener.address)
    stamps: list[float] = []
    done = threading.Event()
    reader = threading.Thread(target=_collect, args=(listener, stamps, done), daemon=True)
    reader.start()

    async def main() -> tuple[float, float]:
        task = asyncio.create_task(sdnotify.watchdog_task(n, interval))
        await asyncio.sleep(6.5 * interval)
        blocked = time.monotonic()
        time.sleep(3 * interval)  # the loop is stuck
        unblocked = time.monotonic()
        await asyncio.sleep(3.5 * interval)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return blocked, unblocked

    blocked, unblocked = asyncio.run(main())
    time.sleep(0.1)
    done.set()
    reader.join(2)

    before = [t for t in stamps if t < blocked]
    during = [t for t in stamps if blocked + 0.02 < t < unblocked]
    after = [t for t in stamps if t >= unblocked]
    assert during == [], (blocked, unblocked, stamps)
    assert 5 <= len(before) <= 8, before
    gaps = sorted(b - a for a, b in itertools.pairwise(before))
    assert 0.08 <= gaps[len(gaps) // 2] <= 0.2, gaps
    assert len(after) >= 2, after


def test_watchdog_task_refuses_a_bad_interval() -> None:
    with pytest.raises(ValueError):
        asyncio.run(sdnotify.watchdog_task(Notifier(None, environ={}), 0))


# --- (d) partimento service install -------------------------------------------------------------


def _cli() -> argparse.ArgumentParser:
    """``partimento`` with only the ``service`` subcommand, as cli.py will wire it."""
    p = argparse.ArgumentParser(prog="partimento")
    install.add_parser(p.add_subparsers(dest="command", required=True))
    return p


def _run(*argv: str) -> int:
    args = _cli().parse_args(list(argv))
    return args.func(args)


def _scripts_partimento() -> Path:
    path = Path(sysconfig.get_path("scripts")) / "partimento"
    require(path.is_file(), f"partimento is not installed in {path.parent} (pip install -e .)")
    return path


def _exec_start(unit: str) -> str:
    return next(line for line in unit.splitlines() if line.startswith("ExecStart="))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home


def test_user_dry_run_prints_and_writes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _scripts_partimento()
    assert _run("service", "install", "--user", "--dry-run") == 0
    out = capsys.readouterr().out
    config = home / ".config" / "partimento" / "partimento.toml"
    assert f"ExecStart={script} run --config {config}\n" in out
    assert f"{home}/.config/systemd/user/partimento-user.service (would write)" in out
    assert "systemctl --user daemon-reload && systemctl --user enable --now partimento-user" in out
    assert list(home.iterdir()) == []


def test_user_install_writes_unit_and_keeps_the_config(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _scripts_partimento()
    assert _run("service", "install", "--user") == 0
    unit = home / ".config" / "systemd" / "user" / "partimento-user.service"
    config = home / ".config" / "partimento" / "partimento.toml"
    assert _exec_start(unit.read_text()) == f"ExecStart={script} run --config {config}"
    assert config.read_bytes() == (ROOT / "config" / "partimento.toml").read_bytes()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert "systemctl --user enable --now partimento-user" in capsys.readouterr().out

    config.write_text("# mine\nmode = 'continue'\n")
    assert _run("service", "install", "--user") == 0
    assert config.read_text() == "# mine\nmode = 'continue'\n"
    out = capsys.readouterr().out
    assert f"kept {config}" in out and f"unchanged {unit}" in out


def test_system_install_under_a_staging_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _scripts_partimento()
    root = tmp_path / "stage"
    assert _run("service", "install", "--root", str(root)) == 0
    unit = (root / "etc/systemd/system/partimento.service").read_text()
    assert _exec_start(unit) == (f"ExecStart={script} run --config /etc/partimento/partimento.toml")
    assert (root / "etc/partimento/partimento.toml").is_file()
    needed = install.installation_paths(script, install.SYSTEM_CONFIG)
    home_value = "read-only" if any(map(install.in_home, needed)) else "yes"
    assert f"\nProtectHome={home_value}\n" in unit
    assert "systemctl daemon-reload && systemctl enable --now partimento" in capsys.readouterr().out


def test_protect_home_follows_the_installation() -> None:
    template = install.read_template(False)
    unit = install.render_unit(
        template,
        executable=Path("/opt/p/bin/partimento"),
        config=Path("/etc/partimento/partimento.toml"),
        protect_home="yes",
    )
    assert "\nProtectHome=yes\n" in unit
    assert install.in_home(Path("/home/alice/partimento/.venv/bin/partimento"))
    assert install.in_home(Path("/root/x"))
    assert not install.in_home(Path("/opt/partimento")) and not install.in_home(Path("/homes"))


@pytest.mark.parametrize(
    ("arg", "word"),
    [
        ("/opt/p/bin/partimento", "/opt/p/bin/partimento"),
        ("/a b/partimento", '"/a b/partimento"'),
        ("/100%/x", "/100%%/x"),
        ("/$HOME/x", "/$$HOME/x"),
        ('/a"b', '"/a\\"b"'),
    ],
)
def test_quote(arg: str, word: str) -> None:
    assert install.quote(arg) == word


def test_missing_template_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: Path
) -> None:
    from partimento.core.errors import PartimentoError

    monkeypatch.setattr(install.locations, "unit_templates", lambda: tmp_path / "nowhere")
    with pytest.raises(PartimentoError) as caught:
        _run("service", "install", "--user", "--dry-run", "--exec", sys.executable)
    assert "no unit template" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unwritable_unit_dir_is_an_install_error(tmp_path: Path, home: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    p = install.plan(user=True, unit_dir=blocker / "units", executable=Path(sys.executable))
    with pytest.raises(InstallError, match="cannot write"):
        install.install(p, say=lambda _: None)


def test_a_missing_program_is_an_install_error(tmp_path: Path, home: Path) -> None:
    with pytest.raises(InstallError, match="not an executable program"):
        install.plan(user=True, executable=tmp_path / "nothing")
