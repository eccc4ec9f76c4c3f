# Helpers of the MELD ingestion rules (ingest.smk).


def meld_index_inputs(wildcards):
    """The unpacked tree (unless text-only) and the configured annotation csvs:
    local paths as they are, URLs through download_meld_annotations."""
    inputs = {} if text_only() else {"unpacked": "resources/meld/unpacked"}
    urls = meld_annotation_urls()
    for split, value in (config["meld"].get("annotations") or {}).items():
        if split in urls:
            inputs[f"csv_{split}"] = MELD_ANNOTATION_DOWNLOAD.format(split=split)
        elif value:
            inputs[f"csv_{split}"] = value
    return inputs


def meld_index_md5s(wildcards):
    """Pinned md5s of the downloaded csvs, re-checked before they are indexed."""
    return {split: meld_annotation_md5(split) for split in meld_annotation_urls()}


def meld_status_shards():
    return [
        f"results/meld/status/{s}/part-{i}.parquet"
        for s in MELD_SPLITS
        for i in shard_ids(s)
    ]


def face_reference_input():
    """The cast's appearance references, when the faces stage selects by them."""
    if config["meld"]["faces"].get("selector", "largest") == "reference":
        return {"references": "results/ifeed/references.parquet"}
    return {}
