"""The default configuration files (``partimento.toml``, ``train.toml``): installed as the data
package ``partimento.defaults`` and read with importlib.resources."""
