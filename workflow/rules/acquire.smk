# Acquire and unpack: a configured local archive is used as is; otherwise the
# official sources are downloaded (resumable, checksummed) into resources/.


def meld_archive():
    return config["meld"].get("archive") or "resources/meld/MELD.Raw.tar.gz"


def ifeed_archive_paths():
    archives = config["ifeed"].get("archives") or []
    if archives:
        return archives
    return [f"resources/ifeed/{f['name']}" for f in config["ifeed"].get("files", [])]


def ifeed_remote(wildcards):
    for entry in config["ifeed"].get("files", []):
        if entry["name"] == wildcards.name:
            return entry
    raise ValueError(f"{wildcards.name} is not listed under ifeed.files")


rule download_meld:
    output:
        "resources/meld/MELD.Raw.tar.gz",
    log:
        "logs/acquire/download_meld.log",
    retries: 2
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=600,
    params:
        url=config["meld"].get("url"),
        md5=config["meld"].get("md5"),
        sha256=config["meld"].get("sha256"),
    script:
        "../scripts/download.py"


rule download_ifeed:
    output:
        "resources/ifeed/{name}",
    log:
        "logs/acquire/download_ifeed_{name}.log",
    retries: 2
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=120,
    params:
        remote=ifeed_remote,
        record=config["ifeed"].get("record"),
    script:
        "../scripts/download.py"


rule unpack_meld:
    input:
        meld_archive(),
    output:
        unpacked=directory("resources/meld/unpacked"),
        report="results/meld/unpack_report.json",
    log:
        "logs/acquire/unpack_meld.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    script:
        "../scripts/unpack.py"


rule unpack_ifeed:
    input:
        ifeed_archive_paths(),
    output:
        unpacked=directory("resources/ifeed/unpacked"),
        report="results/ifeed/unpack_report.json",
    log:
        "logs/acquire/unpack_ifeed.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    script:
        "../scripts/unpack.py"
