# Cross-dataset transfer: the face model trained on one dataset is scored on
# the other, as is (zero_shot) and after fine-tuning on a fraction of the
# target's training faces (finetune_{fraction}). One job per cell and seed:
# the cell of seed S fine-tunes the source model trained with seed S and
# writes the seed's folder ({seeddir}, empty for the first seed, as in
# models.smk); the target-only reference is the model trained on the target.


rule transfer:
    input:
        unpack(transfer_inputs),
    output:
        **transfer_outputs(),
    log:
        "logs/transfer/{source}_to_{target}/{seeddir}{mode}.log",
    benchmark:
        "logs/benchmarks/{seeddir}transfer_{source}_to_{target}_{mode}.tsv"
    wildcard_constraints:
        source="ifeed|meld",
        target="ifeed|meld",
        mode=transfer_modes(),
        seeddir=SEED_DIR_PATTERN,
    conda:
        "../../envs/crossemotion.yaml"
    threads: model_setting(transfer_model(), "threads")
    resources:
        **job_resources("transfer", gpus_of=transfer_model()),
    params:
        transfer=transfer_cfg(),
        model_cfg=config["models"].get(transfer_model(), {}),
        seed=job_seed,
        device=config.get("device", "auto"),
    script:
        "../scripts/transfer.py"
