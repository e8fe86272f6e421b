"""The systemd unit templates: installed as the data package ``partimento.units`` and read with
importlib.resources by ``partimento service install``."""
