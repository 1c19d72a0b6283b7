# The stacking verdicts of all stations (written per station by rule process_station) in one table.


rule collect_stacking_verdicts:
    input:
        all_station_stacks,
    output:
        csv=results("verdicts", "stacking.csv"),
    log:
        log_file("collect_stacking_verdicts"),
    benchmark:
        benchmark_file("collect_stacking_verdicts")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "xdisc verdicts {input} --out {output.csv} 2> {log}"
