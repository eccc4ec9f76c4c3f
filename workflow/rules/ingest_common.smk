# Helpers of the MELD ingestion rules (ingest.smk).


def meld_index_inputs(wildcards):
    """The unpacked tree (unless text-only) and annotation csvs given as local paths."""
    inputs = {} if text_only() else {"unpacked": "resources/meld/unpacked"}
    for split, value in (config["meld"].get("annotations") or {}).items():
        if value and not str(value).startswith(("http://", "https://")):
            inputs[f"csv_{split}"] = value
    return inputs


def meld_status_shards():
    return [
        f"results/meld/status/{s}/part-{i}.parquet"
        for s in MELD_SPLITS
        for i in shard_ids(s)
    ]
