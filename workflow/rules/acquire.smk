# Acquire and unpack. A configured local archive is used as is; otherwise the
# official sources are downloaded (resumable, retried, checksummed) into
# resources/. File names never come from the network while the DAG is built:
# IFEED's are pinned in ifeed.files, or (record mode) listed by a job.

if not config["meld"].get("archive") and not text_only():

    rule download_meld:
        output:
            MELD_DOWNLOAD,
        log:
            "logs/acquire/download_meld.log",
        retries: 2
        conda:
            "../../envs/crossemotion.yaml"
        threads: 1
        resources:
            **job_resources("download_meld"),
        params:
            url=config["meld"].get("url"),
            md5=config["meld"].get("md5"),
            sha256=config["meld"].get("sha256"),
            hint="Set meld.archive to a local copy of MELD.Raw.tar.gz to skip the download.",
        script:
            "../scripts/download.py"


if meld_annotation_urls():

    rule download_meld_annotations:
        output:
            MELD_ANNOTATION_DOWNLOAD,
        log:
            "logs/acquire/download_meld_annotations_{split}.log",
        wildcard_constraints:
            split="|".join(meld_annotation_urls()),
        retries: 2
        conda:
            "../../envs/crossemotion.yaml"
        threads: 1
        resources:
            **job_resources("download_meld_annotations"),
        params:
            url=lambda wildcards: meld_annotation_urls()[wildcards.split],
            md5=lambda wildcards: meld_annotation_md5(wildcards.split),
            sha256=None,
            hint="Set meld.annotations to local copies of the csvs to skip the download.",
        script:
            "../scripts/download.py"


if not config["ifeed"].get("archives") and ifeed_pinned_files():

    rule download_ifeed:
        output:
            "resources/ifeed/{name}",
        log:
            "logs/acquire/download_ifeed_{name}.log",
        wildcard_constraints:
            name="|".join(re.escape(f["name"]) for f in ifeed_pinned_files()),
        retries: 2
        conda:
            "../../envs/crossemotion.yaml"
        threads: 1
        resources:
            **job_resources("download_ifeed"),
        params:
            remote=ifeed_remote,
            record=config["ifeed"].get("record"),
            api=ZENODO_API,
            published=config["ifeed"].get("record_md5s") or [],
            hint="Set ifeed.archives to local copies of the IFEED zips to skip the download.",
        script:
            "../scripts/download.py"


if (
    not config["ifeed"].get("archives")
    and not ifeed_pinned_files()
    and config["ifeed"].get("record")
):

    rule download_ifeed_record:
        output:
            ifeed_record_listing(),
        log:
            "logs/acquire/download_ifeed_record.log",
        retries: 2
        conda:
            "../../envs/crossemotion.yaml"
        threads: 1
        resources:
            **job_resources("download_ifeed_record"),
        params:
            record=config["ifeed"].get("record"),
            api=ZENODO_API,
            published=config["ifeed"].get("record_md5s") or [],
            folder="resources/ifeed",
        script:
            "../scripts/download_record.py"


rule unpack_meld:
    input:
        lambda wildcards: meld_archive(),
    output:
        unpacked=directory("resources/meld/unpacked"),
        report="results/meld/unpack_report.json",
    log:
        "logs/acquire/unpack_meld.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("unpack_meld"),
    params:
        # the unpack fails, keeping nothing, when it yields no clip
        usable="clips",
    script:
        "../scripts/unpack.py"


rule unpack_ifeed:
    input:
        lambda wildcards: ifeed_archive_paths(),
    output:
        unpacked=directory("resources/ifeed/unpacked"),
        report="results/ifeed/unpack_report.json",
    log:
        "logs/acquire/unpack_ifeed.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("unpack_ifeed"),
    params:
        # the unpack fails, keeping nothing, when it yields no image
        usable="images",
    script:
        "../scripts/unpack.py"
