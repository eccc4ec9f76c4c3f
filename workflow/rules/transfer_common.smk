# Input functions of the transfer stage (workflow/rules/transfer.smk includes this file).


def transfer_cfg():
    return config.get("transfer", {})


def transfer_face_model():
    return transfer_cfg().get("model", "resnet50")


def transfer_modes():
    fractions = transfer_cfg().get("fractions", [])
    return "|".join(["zero_shot", *(re.escape(f"finetune_{f:g}") for f in fractions)])


def face_shards_of(dataset, split=None):
    if dataset == "ifeed":
        return [p for p in ifeed_shards() if split is None or f"/faces/{split}/" in p]
    return meld_shards("faces", split)


def transfer_inputs(wildcards):
    inputs = {
        "model": f"{model_dir(transfer_face_model(), wildcards.source)}/model.pt",
        "source_train": face_shards_of(wildcards.source, "train"),
        "faces": face_shards_of(wildcards.target),
        # MELD utterances without a detected face still count (scored by prior)
        "text": meld_shards("text") if wildcards.target == "meld" else [],
    }
    if transfer_cfg().get("exclude_overlap", True):
        inputs["leakage"] = "results/ifeed/leakage.parquet"
    return inputs
