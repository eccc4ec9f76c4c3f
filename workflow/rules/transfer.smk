# Cross-dataset transfer: the face model trained on one dataset is scored on
# the other, as is (zero_shot) and after fine-tuning on a fraction of the
# target's training faces (finetune_{fraction}). One job per cell; the
# target-only reference is the model trained on the target (models.smk).


rule transfer:
    input:
        unpack(transfer_inputs),
    output:
        **transfer_outputs(),
    log:
        "logs/transfer/{source}_to_{target}/{mode}.log",
    benchmark:
        "logs/benchmarks/transfer_{source}_to_{target}_{mode}.tsv"
    wildcard_constraints:
        source="ifeed|meld",
        target="ifeed|meld",
        mode=transfer_modes(),
    conda:
        "../../envs/crossemotion.yaml"
    threads: config["models"].get(transfer_model(), {}).get("threads", 2)
    resources:
        mem_mb=6000,
        runtime=180,
        gpu=model_gpus(transfer_model()),
    params:
        transfer=transfer_cfg(),
        model_cfg=config["models"].get(transfer_model(), {}),
        seed=config.get("seed", 13),
        device=config.get("device", "auto"),
    script:
        "../scripts/transfer.py"
