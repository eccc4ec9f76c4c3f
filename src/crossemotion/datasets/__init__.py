"""Datasets: shards read into torch datasets (clips, faces, text, fusion) and their collates."""
