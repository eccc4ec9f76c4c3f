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


def speaker_crop_align():
    """Whether that model's windows are aligned (its crop_align, else meld.faces.align)."""
    for name, info in MODELS.items():
        if info.unit == "video" and model_setting(name, "crop") == "speaker":
            return bool(with_window_align(name, model_cfg(name))["crop_align"])
    return bool(config["meld"]["faces"].get("align", True))


def speaker_compare_detectors():
    """Detectors scored beside the configured one by the speaker-face yardstick."""
    # (not named "report": a keyword of the Snakefile language)
    section = (config.get("report") or {}).get("speaker_faces") or {}
    return list(section.get("compare_detectors", []))


def speaker_compare_selectors():
    """Speaker selectors scored beside meld.faces.selector (default [largest]); the
    configured one among them is scored once, as the configured block."""
    section = (config.get("report") or {}).get("speaker_faces") or {}
    return list(section.get("compare_selectors", ["largest"]))


def speaker_compare_inputs():
    """The cast's references, when a comparison run chooses the speaker by them:
    a comparison detector under a selector other than largest, or a comparison
    selector other than largest."""
    configured = config["meld"]["faces"].get("selector", "largest")
    selectors = [s for s in speaker_compare_selectors() if s != configured]
    if speaker_compare_detectors():
        selectors.append(configured)
    if any(s != "largest" for s in selectors):
        return {"references": "results/ifeed/references.parquet"}
    return {}


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
        inputs += [
            "results/tables/speakers.html",
            "results/tables/speakers_by_character.html",
        ]
    if transfer_cells():
        inputs += [
            "results/tables/transfer.html",
            "results/figures/transfer_heatmap.png",
        ]
    return inputs
