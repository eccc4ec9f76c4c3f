"""CrossEmotion: cross-dataset emotion recognition on MELD and IFEED."""

__version__ = "0.1.0"
