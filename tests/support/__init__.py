"""Helpers shared by the tests (and the benches): the project's paths and the CI rule
(:mod:`support.project`), a strict synthesizer (:mod:`support.synth`), a private JACK server
(:mod:`support.jack`), MQTT brokers (:mod:`support.broker`), tiny trained models
(:mod:`support.model_types`), the engine on a virtual clock (:mod:`support.engine`), the daemon
over real JACK ports (:mod:`support.daemon`), generated MIDI songs (:mod:`support.songs`) and the
command line as a subprocess (:mod:`support.cli`).

``pyproject.toml`` puts ``tests/`` on ``sys.path`` for pytest, so a test imports
``from support.jack import jack_server``; fixtures live in ``conftest.py``. No test module
imports another (``tests/test_layout.py``)."""

import pkgutil

import pytest

# Their asserts say what differed, as a test's do (this package is already imported: its
# modules are named one by one).
pytest.register_assert_rewrite(*(f"support.{m.name}" for m in pkgutil.iter_modules(__path__)))
