"""Text research tools: the sweep and scoring that chose config/meld_text.yaml."""
