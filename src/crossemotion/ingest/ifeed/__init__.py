"""IFEED: archive members to face shards, traced to their MELD clips, leak links."""
