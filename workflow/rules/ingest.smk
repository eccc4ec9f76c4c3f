# MELD ingestion: index the unpacked archive (or the annotations alone in a
# text-only run), write text shards, decode clips shard by shard (shard =
# dialogue_id % meld.shards[split]), crop faces, assemble the manifest.


rule meld_index:
    input:
        unpack(meld_index_inputs),
    output:
        "results/meld/index.parquet",
    log:
        "logs/meld/index.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("meld_index"),
    params:
        md5s=meld_index_md5s,
        text_only=text_only(),
    script:
        "../scripts/meld_index.py"


rule meld_text:
    input:
        "results/meld/index.parquet",
    output:
        layout.shard_path("meld", "text", "{split}", 0),
    log:
        "logs/meld/text_{split}.log",
    wildcard_constraints:
        split="train|dev|test",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("meld_text"),
    script:
        "../scripts/meld_text.py"


rule decode_meld:
    input:
        index="results/meld/index.parquet",
        unpacked="resources/meld/unpacked",
    output:
        clips=layout.shard_path("meld", "clips", "{split}", "{shard}"),
        status=f"results/meld/status/{{split}}/{layout.shard_name('{shard}')}",
    log:
        "logs/meld/decode_{split}_{shard}.log",
    wildcard_constraints:
        split="train|dev|test",
        shard=r"\d{4}",
    # the clip models wait on decode and faces: scheduled before other ready jobs
    priority: 50
    conda:
        "../../envs/crossemotion.yaml"
    threads: config["meld"]["decode"].get("workers", 2)
    resources:
        **job_resources("decode_meld"),
    params:
        decode=config["meld"]["decode"],
        n_shards=lambda wc: int(config["meld"]["shards"][wc.split]),
    script:
        "../scripts/decode_meld.py"


rule meld_faces:
    input:
        layout.shard_path("meld", "clips", "{split}", "{shard}"),
        # meld.faces.selector: reference picks the face most like the speaker's IFEED faces
        **face_reference_input(),
    output:
        faces=layout.shard_path("meld", "faces", "{split}", "{shard}"),
        # one row per clip: its face tracks and how its speaker was chosen
        speakers="results/meld/speakers/{split}/part-{shard}.parquet",
    log:
        "logs/meld/faces_{split}_{shard}.log",
    wildcard_constraints:
        split="train|dev|test",
        shard=r"\d{4}",
    priority: 50
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("meld_faces"),
    params:
        faces=config["meld"]["faces"],
        jpeg_quality=config["meld"]["decode"].get("jpeg_quality", 90),
    script:
        "../scripts/meld_faces.py"


rule meld_manifest:
    input:
        index="results/meld/index.parquet",
        status=meld_status_shards(),
        faces=meld_shards("faces"),
        speakers=meld_speaker_shards(),
    output:
        manifest="results/meld/manifest.parquet",
        summary="results/meld/summary.md",
    log:
        "logs/meld/manifest.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("meld_manifest"),
    params:
        max_bad_fraction=config["meld"].get("max_bad_fraction", 0.02),
    script:
        "../scripts/meld_manifest.py"
