# Tables, figures and the HTML report. Tables and figures are recomputed from
# each run's predictions.parquet; report.html comes from a nested
# `snakemake --report` run by the report_html rule (see crossemotion.reporting.report).


report: "../report/workflow.rst"


localrules:
    report_html,


def report_model_runs():
    return [[m, d] for m, d in model_runs()]


def report_transfer_cells():
    return [[s, t, m] for s, t, m in transfer_cells()]


def transfer_model():
    return config.get("transfer", {}).get("model", "resnet50")


def transfer_targets():
    return sorted({t for _s, t, _m in transfer_cells()})


def run_files(names):
    files = []
    for model, dataset in model_runs():
        files += [f"{model_dir(model, dataset)}/{name}" for name in names]
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
    if transfer_cells():
        inputs += [
            "results/tables/transfer.csv",
            "results/figures/transfer_heatmap.png",
        ]
    return inputs


wildcard_constraints:
    model="[A-Za-z0-9_]+",
    dataset="meld|ifeed",


rule benchmark_table:
    input:
        run_files(["metrics.json", "predictions.parquet"]),
    output:
        csv=report(
            "results/tables/benchmark.csv",
            caption="../report/benchmark.rst",
            category="Tables",
            labels={"table": "benchmark", "format": "csv"},
        ),
        md="results/tables/benchmark.md",
        html=report(
            "results/tables/benchmark.html",
            caption="../report/benchmark.rst",
            category="Tables",
            labels={"table": "benchmark", "format": "html"},
        ),
    log:
        "logs/report/benchmark_table.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        table="benchmark",
        runs=report_model_runs(),
        settings=report_params(),
    script:
        "../scripts/tables.py"


rule character_table:
    input:
        run_files(["predictions.parquet"]),
        transfer_files(["predictions.parquet"], with_target_only=False),
    output:
        csv=report(
            "results/tables/character_wise.csv",
            caption="../report/character_wise.rst",
            category="Tables",
            labels={"table": "character-wise", "format": "csv"},
        ),
        md="results/tables/character_wise.md",
        html=report(
            "results/tables/character_wise.html",
            caption="../report/character_wise.rst",
            category="Tables",
            labels={"table": "character-wise", "format": "html"},
        ),
    log:
        "logs/report/character_table.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        table="character_wise",
        runs=report_model_runs(),
        cells=report_transfer_cells(),
        transfer_model=transfer_model(),
        settings=report_params(),
    script:
        "../scripts/tables.py"


rule transfer_table:
    input:
        transfer_files(["metrics.json", "predictions.parquet"]),
    output:
        csv=report(
            "results/tables/transfer.csv",
            caption="../report/transfer.rst",
            category="Tables",
            labels={"table": "transfer", "format": "csv"},
        ),
        md="results/tables/transfer.md",
        html=report(
            "results/tables/transfer.html",
            caption="../report/transfer.rst",
            category="Tables",
            labels={"table": "transfer", "format": "html"},
        ),
    log:
        "logs/report/transfer_table.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        table="transfer",
        cells=report_transfer_cells(),
        transfer_model=transfer_model(),
        settings=report_params(),
    script:
        "../scripts/tables.py"


rule confusion_figure:
    input:
        predictions=f"{model_dir('{model}', '{dataset}')}/predictions.parquet",
    output:
        report(
            "results/figures/confusion/{model}/{dataset}.png",
            caption="../report/confusion.rst",
            category="Confusion matrices",
            labels={"model": "{model}", "dataset": "{dataset}"},
        ),
    log:
        "logs/report/confusion/{model}_{dataset}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="confusion",
        demo=demo_data(),
    script:
        "../scripts/figures.py"


rule training_figure:
    input:
        train_log=f"{model_dir('{model}', '{dataset}')}/train_log.csv",
    output:
        report(
            "results/figures/training/{model}/{dataset}.png",
            caption="../report/training.rst",
            category="Training curves",
            labels={"model": "{model}", "dataset": "{dataset}"},
        ),
    log:
        "logs/report/training/{model}_{dataset}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="training",
        demo=demo_data(),
    script:
        "../scripts/figures.py"


rule transfer_heatmap:
    input:
        table="results/tables/transfer.csv",
    output:
        report(
            "results/figures/transfer_heatmap.png",
            caption="../report/transfer_heatmap.rst",
            category="Transfer",
            labels={"figure": "heat map"},
        ),
    log:
        "logs/report/transfer_heatmap.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="transfer_heatmap",
        demo=demo_data(),
    script:
        "../scripts/figures.py"


rule character_figure:
    input:
        table="results/tables/character_wise.csv",
    output:
        report(
            "results/figures/character_wf1.png",
            caption="../report/character_bars.rst",
            category="Characters",
            labels={"figure": "weighted F1 per character"},
        ),
    log:
        "logs/report/character_figure.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        figure="character_bars",
        demo=demo_data(),
    script:
        "../scripts/figures.py"


rule report_html:
    input:
        report_inputs(),
    output:
        "results/report.html",
    log:
        "logs/report/report_html.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=config,
        snakefile=workflow.main_snakefile,
    script:
        "../scripts/report_html.py"
