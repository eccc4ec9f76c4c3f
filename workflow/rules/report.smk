# Tables, figures and the HTML report. Tables and figures are recomputed from
# each run's predictions.parquet; report.html comes from a nested
# `snakemake --report` run by the report_html rule (see crossemotion.reporting.report).


report: "../report/workflow.rst"


localrules:
    report_html,


wildcard_constraints:
    model="[A-Za-z0-9_]+",
    dataset="meld|ifeed",


rule benchmark_table:
    input:
        run_files([layout.METRICS, layout.PREDICTIONS]),
    output:
        csv="results/tables/benchmark.csv",
        md="results/tables/benchmark.md",
        html=report(
            "results/tables/benchmark.html",
            caption="../report/benchmark.rst",
            category="Tables",
            labels={"table": "benchmark"},
        ),
    log:
        "logs/report/benchmark_table.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("benchmark_table"),
    params:
        table="benchmark",
        runs=report_model_runs(),
        settings=report_params(),
    script:
        "../scripts/tables.py"


rule character_table:
    input:
        run_files([layout.PREDICTIONS]),
        transfer_files([layout.PREDICTIONS], with_target_only=False),
    output:
        csv="results/tables/character_wise.csv",
        md="results/tables/character_wise.md",
        html=report(
            "results/tables/character_wise.html",
            caption="../report/character_wise.rst",
            category="Tables",
            labels={"table": "character-wise"},
        ),
    log:
        "logs/report/character_table.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("character_table"),
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
        transfer_files([layout.METRICS, layout.PREDICTIONS]),
        **transfer_leakage_input(),
    output:
        csv="results/tables/transfer.csv",
        md="results/tables/transfer.md",
        html=report(
            "results/tables/transfer.html",
            caption="../report/transfer.rst",
            category="Tables",
            labels={"table": "transfer"},
        ),
    log:
        "logs/report/transfer_table.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("transfer_table"),
    params:
        table="transfer",
        cells=report_transfer_cells(),
        transfer_model=transfer_model(),
        settings=report_params(),
    script:
        "../scripts/tables.py"


rule speaker_faces:
    # Does the MELD face choice (faces shards, crop: speaker) pick the speaker's
    # face? Scored against the aligned IFEED boxes of the speaker, for the
    # configured detector and selector, report.speaker_faces.compare_detectors
    # and report.speaker_faces.compare_selectors (run here on the same frames of
    # the clips the yardstick scores; they pick the speaker as the faces stage
    # does, with the cast's references where the selector uses them), each split
    # by clip kind (listener larger than the speaker, or not).
    input:
        **speaker_compare_inputs(),
        alignment="results/ifeed/alignment.parquet",
        index="results/meld/index.parquet",
        faces=meld_shards("faces"),
        clips=meld_shards("clips"),
    output:
        csv="results/tables/speaker_faces.csv",
        md="results/tables/speaker_faces.md",
        detail="results/ifeed/speaker_faces.parquet",
        html=report(
            "results/tables/speaker_faces.html",
            caption="../report/speaker_faces.rst",
            category="Tables",
            labels={"table": "speaker faces"},
        ),
    log:
        "logs/report/speaker_faces.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("speaker_faces"),
    params:
        crop_scale=speaker_crop_scale(),
        align=speaker_crop_align(),
        faces=config["meld"]["faces"],
        compare=speaker_compare_detectors(),
        selectors=speaker_compare_selectors(),
        settings=report_params(),
    script:
        "../scripts/speaker_faces.py"


rule speakers_table:
    # How each MELD utterance's speaker face was chosen (the faces stage's
    # speakers shards: selector, status, method, tracks, confidence), checked
    # against the aligned IFEED boxes of the speaker, and per character.
    input:
        speakers=meld_speaker_shards(),
        faces=meld_shards("faces"),
        clips=meld_shards("clips"),
        alignment="results/ifeed/alignment.parquet",
    output:
        csv="results/tables/speakers.csv",
        md="results/tables/speakers.md",
        html=report(
            "results/tables/speakers.html",
            caption="../report/speakers.rst",
            category="Tables",
            labels={"table": "speakers"},
        ),
        by_character_csv="results/tables/speakers_by_character.csv",
        by_character_md="results/tables/speakers_by_character.md",
        by_character_html=report(
            "results/tables/speakers_by_character.html",
            caption="../report/speakers_by_character.rst",
            category="Tables",
            labels={"table": "speakers by character"},
        ),
    log:
        "logs/report/speakers_table.log",
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("speakers_table"),
    params:
        settings=report_params(),
    script:
        "../scripts/speakers.py"


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
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("confusion_figure"),
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
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("training_figure"),
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
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("transfer_heatmap"),
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
    conda:
        "../../envs/crossemotion.yaml"
    threads: 1
    resources:
        **job_resources("character_figure"),
    params:
        figure="character_bars",
        demo=demo_data(),
    script:
        "../scripts/figures.py"


rule report_html:
    # A run block, not a script: the nested `snakemake --report` must use this
    # very Snakemake (sys.executable), which a job's conda env may not contain.
    input:
        report_inputs(),
    output:
        "results/report.html",
    log:
        "logs/report/report_html.log",
    threads: 1
    resources:
        **job_resources("report_html"),
    params:
        config=config,
        snakefile=workflow.main_snakefile,
    run:
        from crossemotion.reporting.report import build_report

        build_report(
            output[0], params.snakefile, params.config, list(input), log_path=log[0]
        )
