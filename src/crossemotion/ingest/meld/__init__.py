"""MELD's annotations: the official csvs, text cleaning, the clip index."""
