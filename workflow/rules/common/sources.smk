# Helpers of acquire.smk and ingest.smk.


# ---------------------------------------------------------- acquire.smk
# Archive paths: a configured local copy, else the download's path. Never a
# network call here: the DAG must build offline.
MELD_DOWNLOAD = "resources/meld/MELD.Raw.tar.gz"
ZENODO_API = config["ifeed"].get("zenodo_api") or "https://zenodo.org/api/records/"


def meld_archive():
    """The MELD archive to unpack: meld.archive when set, else the download."""
    return config["meld"].get("archive") or MELD_DOWNLOAD


MELD_ANNOTATION_DOWNLOAD = "resources/meld/annotations/{split}_sent_emo.csv"


def meld_annotation_urls():
    """Splits whose meld.annotations entry is a URL: {split: url}."""
    entries = config["meld"].get("annotations") or {}
    return {
        split: str(value)
        for split, value in entries.items()
        if value and str(value).startswith(("http://", "https://"))
    }


def meld_annotation_md5(split):
    return (config["meld"].get("annotations_md5") or {}).get(split)


def ifeed_pinned_files():
    return config["ifeed"].get("files") or []


def ifeed_record_listing():
    return f"resources/ifeed/zenodo_{config['ifeed']['record']}.json"


def ifeed_archive_paths():
    """Local archives, else the pinned downloads, else the record-mode listing."""
    archives = config["ifeed"].get("archives") or []
    if archives:
        return archives
    if ifeed_pinned_files():
        return [f"resources/ifeed/{f['name']}" for f in ifeed_pinned_files()]
    if config["ifeed"].get("record"):
        return [ifeed_record_listing()]
    raise ValueError(
        "IFEED has no source: set ifeed.archives to local zips, pin ifeed.files, "
        "or set ifeed.record to the Zenodo record id"
    )


def ifeed_remote(wildcards):
    for entry in ifeed_pinned_files():
        if entry["name"] == wildcards.name:
            return entry
    raise ValueError(f"{wildcards.name} is not listed under ifeed.files")


# ----------------------------------------------------------- ingest.smk
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


def face_reference_input():
    """The cast's appearance references, when the faces stage selects by them."""
    if config["meld"]["faces"].get("selector", "track") == "reference":
        return {"references": "results/ifeed/references.parquet"}
    return {}
