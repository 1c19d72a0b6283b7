# Per station, from its receiver functions: the conventional verdict (depth and slowness stacks with
# bootstrap bounds, figure) and the CNN's input images (stacks per slowness bin). One job writes both
# files: 10^4 stations plan as 3 x 10^4 jobs, not 4 x 10^4 (the two use the same settings).


rule stack_station:
    input:
        settings=settings("station"),
        rf=rules.compute_receiver_functions.output.nc,
    output:
        nc=results("stack", "{network}.{station}.nc"),
        png=report(
            results("figures", "stack", "{network}.{station}.png"),
            caption="../report/stack.rst",
            category="Stacking",
        ),
        images=results("images", "{network}.{station}.nc"),
    log:
        log_file("stack_station", "network", "station"),
    benchmark:
        benchmark_file("stack_station", "network", "station")
    conda:
        XDISC_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "xdisc stack --settings-file {input.settings} --rf {input.rf} --out {output.nc} --figure {output.png}"
        " --images {output.images} 2> {log}"


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
