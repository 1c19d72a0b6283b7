# The demo network of the default run (data.source: demo): synthetic stations with known truth beside the
# real embedded one, written as a local archive that the download rules read like a user's; and the score
# of both methods against that truth.


rule make_demo_network:
    input:
        settings=settings("demo"),
    output:
        info=DEMO_PATHS["info"],
        truth=DEMO_PATHS["truth"],
        inventory=DEMO_PATHS["inventory"],
        events=DEMO_PATHS["events"],
        sds=directory(DEMO_PATHS["sds"]),
    log:
        log_file("make_demo_network"),
    benchmark:
        benchmark_file("make_demo_network")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "xdisc demo make --settings-file {input.settings} 2> {log}"


rule score_demo:
    input:
        settings=settings("demo"),
        lineage=lineage("demo_score"),
        stations=rules.compare_verdicts.output.csv,
        truth=DEMO_PATHS["truth"],
    output:
        summary=results("metrics", "demo_score.json"),
        figure=report(
            results("figures", "demo_score.png"),
            caption="../report/demo_score.rst",
            category="Verdicts",
        ),
    log:
        log_file("score_demo"),
    benchmark:
        benchmark_file("score_demo")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "xdisc demo score --settings-file {input.settings} --stations {input.stations} --truth {input.truth}"
        " --out {output.summary} --figure {output.figure} 2> {log}"
