# Embedded demo data: writes the MELD/IFEED archives that config/demo.yaml's
# meld.archive and ifeed.archives point at. Only active with synth.enabled.


if config.get("synth", {}).get("enabled", False):

    rule synth_demo:
        output:
            meld=config["synth"]["out"] + "/MELD.Raw.tar.gz",
            ifeed=config["synth"]["out"] + "/IFEED_Base.zip",
        log:
            "logs/synth/synth_demo.log",
        threads: 2
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            synth=config["synth"],
        script:
            "../scripts/synth_demo.py"
