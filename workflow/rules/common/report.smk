# Helpers of report.smk.


def report_model_runs():
    return [[m, d] for m, d in model_runs()]


def report_transfer_cells():
    return [[s, t, m] for s, t, m in transfer_cells()]


def transfer_leakage_input():
    """The leak links the transfer cells excluded by, for the target-only rows."""
    if transfer_cells() and transfer_cfg().get("exclude_overlap", True):
        return {"leakage": "results/ifeed/leakage.parquet"}
    return {}


def speaker_crop_scale():
    """crop_scale of the first clip model cropping around the speaker (else the default)."""
    for name, info in MODELS.items():
        if info.unit == "video" and model_setting(name, "crop") == "speaker":
            return float(model_setting(name, "crop_scale"))
    return float(model_default("crop_scale"))


def data_files():
    """Files whose names/sizes (manifests: bytes) make the data fingerprint."""
    files = meld_shards("text")
    if not text_only():
        files += ["results/meld/manifest.parquet", "results/ifeed/manifest.parquet"]
        files += meld_shards("faces") + ifeed_shards()
    return files


def report_params():
    return {
        "config": config,
        "demo": demo_data(),
        "root": workflow.basedir,
        "data_files": data_files(),
        "reference_rows": config.get("report", {}).get("reference_rows", True),
    }


def confusion_figures():
    return [f"results/figures/confusion/{m}/{d}.png" for m, d in model_runs()]


def training_figures():
    return [f"results/figures/training/{m}/{d}.png" for m, d in model_runs()]


def report_inputs():
    inputs = [
        "results/tables/benchmark.html",
        "results/tables/character_wise.html",
        "results/figures/character_wf1.png",
    ]
    inputs += confusion_figures() + training_figures()
    if not text_only():
        inputs += ["results/ifeed/alignment.html", "results/tables/speaker_faces.html"]
    if transfer_cells():
        inputs += [
            "results/tables/transfer.html",
            "results/figures/transfer_heatmap.png",
        ]
    return inputs
