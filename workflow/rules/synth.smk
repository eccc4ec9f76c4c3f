# Embedded demo data: writes the MELD/IFEED archives that config/demo.yaml's
# meld.archive and ifeed.archives point at. Only active with synth.enabled.


if config.get("synth", {}).get("enabled", False):
    SYNTH_OUT = config["synth"]["out"]

    rule synth_demo:
        output:
            meld=f"{SYNTH_OUT}/MELD.Raw.tar.gz",
            ifeed=f"{SYNTH_OUT}/IFEED_Base.zip",
            # where each IFEED image was cut from: for tests, no rule reads it
            truth=f"{SYNTH_OUT}/ifeed_truth.parquet",
        log:
            "logs/synth/synth_demo.log",
        conda:
            "../../envs/crossemotion.yaml"
        threads: 2
        resources:
            **job_resources("synth_demo"),
        params:
            synth=config["synth"],
        script:
            "../scripts/synth_demo.py"
