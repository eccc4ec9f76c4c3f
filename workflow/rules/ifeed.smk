# IFEED ingestion: the unpacked archives become the manifest and faces shards
# (same schema as MELD faces); then each IFEED image is traced to the MELD clip,
# frame and face it was cut from, which decides what leaks into which MELD split.


rule ifeed_shards:
    input:
        unpacked="resources/ifeed/unpacked",
        report="results/ifeed/unpack_report.json",
    output:
        manifest="results/ifeed/manifest.parquet",
        summary="results/ifeed/summary.md",
        shards=ifeed_shards(),
    log:
        "logs/ifeed/shards.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 2
    resources:
        **job_resources("ifeed_shards"),
    params:
        face_size=config["ifeed"]["face_size"],
        n_shards=config["ifeed"]["shards"],
        max_bad_fraction=config["ifeed"]["max_bad_fraction"],
        jpeg_quality=config["ifeed"].get("jpeg_quality", 90),
        # IFEED's faces are aligned as MELD's (crossemotion.ingest.ifeed.members.Aligner)
        # unless ifeed.align_faces is false
        faces=config["meld"]["faces"],
        align_faces=config["ifeed"].get("align_faces", True),
    script:
        "../scripts/ifeed_shards.py"


rule ifeed_align:
    # Content match of each IFEED image against the MELD clips with its key in
    # any split (crossemotion.ingest.ifeed.align); images are sharded by key.
    input:
        manifest="results/ifeed/manifest.parquet",
        index="results/meld/index.parquet",
        meld="resources/meld/unpacked",
        ifeed="resources/ifeed/unpacked",
    output:
        f"results/ifeed/alignment/{layout.shard_name('{shard}')}",
    log:
        "logs/ifeed/align_{shard}.log",
    wildcard_constraints:
        shard=r"\d{4}",
    # transfer waits on the alignment: done early, transfer overlaps training
    priority: 20
    conda:
        "../../envs/crossemotion.yaml"
    threads: config["ifeed"].get("align", {}).get("threads", 2)
    resources:
        **job_resources("ifeed_align"),
    params:
        align=config["ifeed"].get("align", {}),
    script:
        "../scripts/ifeed_align.py"


rule ifeed_alignment:
    input:
        align_shards(),
    output:
        parquet="results/ifeed/alignment.parquet",
        md="results/ifeed/alignment.md",
        html=report(
            "results/ifeed/alignment.html",
            caption="../report/alignment.rst",
            category="Data",
            labels={"table": "IFEED to MELD alignment"},
        ),
    log:
        "logs/ifeed/alignment.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("ifeed_alignment"),
    params:
        align=config["ifeed"].get("align", {}),
    script:
        "../scripts/ifeed_alignment.py"


rule ifeed_leakage:
    # Which MELD utterances each IFEED image leaks into: its aligned one, or
    # (transfer.unaligned: all_key_splits) every MELD utterance with its key.
    input:
        alignment="results/ifeed/alignment.parquet",
        index="results/meld/index.parquet",
    output:
        "results/ifeed/leakage.parquet",
    log:
        "logs/ifeed/leakage.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("ifeed_leakage"),
    params:
        policy=config.get("transfer", {}).get("unaligned", "all_key_splits"),
    script:
        "../scripts/ifeed_leakage.py"


rule ifeed_references:
    # Appearance references of each cast member from their matched IFEED faces,
    # for meld.faces.selector: reference (crossemotion.ingest.faces.references).
    input:
        alignment="results/ifeed/alignment.parquet",
        ifeed="resources/ifeed/unpacked",
    output:
        "results/ifeed/references.parquet",
    log:
        "logs/ifeed/references.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("ifeed_references"),
    params:
        # the schema's default is filled in by the validation (common.smk)
        seed=config["seed"],
    script:
        "../scripts/ifeed_references.py"
