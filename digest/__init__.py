"""digest: turn a folder of event entries into a weekly email newsletter."""

__version__ = "0.1.0"
