# CrossEmotion: cross-dataset emotion recognition on MELD (video) and IFEED
# (faces). `snakemake --cores 8 all` with config/config.yaml runs the real
# benchmark; add `--configfile config/demo.yaml` for the embedded demo.


configfile: "config/config.yaml"


# Helpers first (functions only: set-up and config, paths, job sizes, one file
# per stage), then the rules, one file per stage.
include: "workflow/rules/common.smk"
include: "workflow/rules/common/paths.smk"
include: "workflow/rules/common/resources.smk"
include: "workflow/rules/common/sources.smk"
include: "workflow/rules/common/training.smk"
include: "workflow/rules/common/report.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/ifeed.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_targets(),
