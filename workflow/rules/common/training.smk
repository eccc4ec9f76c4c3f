# Helpers of models.smk and transfer.smk (their resources: resources.smk).


# ----------------------------------------------------------- models.smk
# empty (first seed) or a seed folder such as seed17, slash included
SEED_DIR_PATTERN = r"(seed\d+/)?"


def model_datasets(model):
    """Wildcard constraint: the datasets the config trains ``model`` on."""
    datasets = model_setting(model, "datasets")
    return "|".join(datasets) if datasets else "(?!)"


def train_inputs(model):
    def inputs(wildcards):
        if wildcards.dataset == "ifeed":
            return named_shards("ifeed", ["faces"])
        kinds = list(MODELS[model].inputs)
        # speaker-centred clips read the face boxes of the faces stage
        if model_setting(model, "crop") == "speaker" and "faces" not in kinds:
            kinds.append("faces")
        return named_shards("meld", kinds)

    return inputs


def run_outputs(model):
    """Named run files; {seeddir} is empty for the first seed (the contract paths)."""
    folder = f"{model_dir(model, '{dataset}')}/{{seeddir}}"
    return {Path(name).stem: f"{folder}{name}" for name in TRAIN_FILES}


def member_folder(member="{member}"):
    return f"{layout.MEMBERS_DIR}/member{member}/"


def train_outputs(model):
    """The run files a training job writes: its run's, or for an ensemble its
    member's, inside the run (crossemotion.layout.member_subdir)."""
    outputs = run_outputs(model)
    if not ENSEMBLES[model]:
        return outputs
    return {
        key: path.replace("{seeddir}", f"{{seeddir}}{member_folder()}")
        for key, path in outputs.items()
    }


def train_log(model, kind):
    """log or benchmark file of a training job; an ensemble's member has its own."""
    member = "_member{member}" if ENSEMBLES[model] else ""
    if kind == "benchmark":
        return f"logs/benchmarks/{{seeddir}}train_{model}_{{dataset}}{member}.tsv"
    return f"logs/models/{model}/{{seeddir}}{{dataset}}{member}.log"


def with_window_align(model, section):
    """A clip model's section with ``crop_align`` from ``meld.faces.align`` unless it
    sets its own: the speaker windows are aligned as the face crops are."""
    if MODELS[model].unit != "video" or "crop_align" in section:
        return section
    return {**section, "crop_align": bool(config["meld"]["faces"].get("align", True))}


def member_cfg(model):
    """A training job's model section: the model's, or its ensemble member's."""
    if not ENSEMBLES[model]:
        return with_window_align(model, model_cfg(model))
    return lambda wildcards: with_window_align(
        model, ENSEMBLES[model][int(wildcards.member)]
    )


def ensemble_inputs(model):
    """The run files of every member of the ensemble's seed and dataset."""

    def inputs(wildcards):
        run = f"{model_dir(model, wildcards.dataset)}/{wildcards.seeddir}"
        folders = [f"{run}{member_folder(i)}" for i in range(len(ENSEMBLES[model]))]
        return {
            "metrics": [f"{f}{layout.METRICS}" for f in folders],
            "files": [
                f"{f}{name}"
                for f in folders
                for name in TRAIN_FILES
                if name != layout.METRICS
            ],
        }

    return inputs


def train_params(model):
    return {
        "model": model,
        "model_cfg": member_cfg(model),
        "seed": job_seed,
        # only when not the default: emotion runs keep their params (no rerun)
        **({"task": task()} if task() != "emotion" else {}),
        "device": config.get("device", "auto"),
        "demo": demo_data(),
    }


# --------------------------------------------------------- transfer.smk
def transfer_modes():
    fractions = transfer_cfg().get("fractions", [])
    return "|".join(["zero_shot", *(re.escape(f"finetune_{f:g}") for f in fractions)])


def transfer_inputs(wildcards):
    """The source model of the job's seed, and the shards of both datasets."""
    source_train = named_shards(wildcards.source, ["faces"])[
        layout.input_name("faces", "train")
    ]
    source_dir = model_dir(transfer_model(), wildcards.source)
    inputs = {
        "model": f"{source_dir}/{wildcards.seeddir}{layout.CHECKPOINT}",
        "source_train": source_train,
        **named_shards(wildcards.target, ["faces"]),
    }
    # MELD utterances without a detected face still count (scored by prior)
    if wildcards.target == "meld":
        inputs.update(named_shards("meld", ["text"]))
    if transfer_cfg().get("exclude_overlap", True):
        inputs["leakage"] = "results/ifeed/leakage.parquet"
    return inputs


def transfer_outputs():
    """Named cell files; {seeddir} is empty for the first seed (the contract paths)."""
    folder = layout.transfer_dir("{source}", "{target}", "{mode}")
    return {
        Path(name).stem: f"{folder}/{{seeddir}}{name}" for name in layout.TRANSFER_FILES
    }
