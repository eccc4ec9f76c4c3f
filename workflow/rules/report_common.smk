# Input functions of the report stage (workflow/rules/report.smk includes this file).


def report_model_runs():
    return [[m, d] for m, d in model_runs()]


def report_transfer_cells():
    return [[s, t, m] for s, t, m in transfer_cells()]


def transfer_model():
    return config.get("transfer", {}).get("model", "resnet50")


def transfer_targets():
    return sorted({t for _s, t, _m in transfer_cells()})


def transfer_leakage_input():
    """The leak links the transfer cells excluded by, for the target-only rows."""
    if transfer_cells() and config.get("transfer", {}).get("exclude_overlap", True):
        return {"leakage": "results/ifeed/leakage.parquet"}
    return {}


def speaker_crop_scale():
    """crop_scale of the first clip model cropping around the speaker (else the default)."""
    for name in VIDEO_MODELS:
        cfg = config["models"].get(name, {})
        if cfg.get("crop") == "speaker":
            return float(cfg.get("crop_scale", 1.8))
    return 1.8


def run_files(names):
    files = []
    for model, dataset in model_runs():
        files += [
            f"{model_dir(model, dataset)}/{d}{name}"
            for d in seed_dirs()
            for name in names
        ]
    return files


def transfer_files(names, with_target_only=True):
    files = [
        f"results/transfer/{s}_to_{t}/{m}/{name}"
        for s, t, m in transfer_cells()
        for name in names
    ]
    if with_target_only:
        files += [
            f"{model_dir(transfer_model(), t)}/{name}"
            for t in transfer_targets()
            if (transfer_model(), t) in model_runs()
            for name in names
        ]
    return list(dict.fromkeys(files))


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
