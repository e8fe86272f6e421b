"""The runtime's commands (``partimento run``, ``demo``, ``harmonize``, ``sample``, ``ports``,
``service``): each module owns its parser (``add_parser(subparsers, parents)``) and its work,
and imports nothing of :mod:`partimento.training`."""
