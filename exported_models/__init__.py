"""The models Partimento ships, one folder each (``model.json``, ``model.onnx``...): installed
as the data package ``partimento.models`` and read with importlib.resources."""
