"""Example melodies: installed as the data package ``partimento.examples`` (``partimento sample``
seeds the harmonizers with ``chorale-melody.mid``)."""
