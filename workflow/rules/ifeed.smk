# IFEED ingestion: the unpacked archives become the manifest and faces shards
# (same schema as MELD faces), then IFEED source keys are matched against MELD
# splits to report leakage.


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
        mem_mb=2000,
        runtime=60,
    params:
        face_size=config["ifeed"]["face_size"],
        n_shards=config["ifeed"]["shards"],
        max_bad_fraction=config["ifeed"]["max_bad_fraction"],
        jpeg_quality=config["ifeed"].get("jpeg_quality", 90),
    script:
        "../scripts/ifeed_shards.py"


rule ifeed_overlap:
    input:
        manifest="results/ifeed/manifest.parquet",
        meld="results/meld/index.parquet",
    output:
        csv="results/ifeed/overlap.csv",
        md="results/ifeed/overlap.md",
    log:
        "logs/ifeed/overlap.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/ifeed_overlap.py"
