"""Frames to faces: detectors, speaker choice, crops, cast references."""
