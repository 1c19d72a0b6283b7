# Conventional verdict per station: depth and slowness stacks with bootstrap bounds.


rule stack_station:
    input:
        rf=rules.compute_receiver_functions.output.nc,
    output:
        nc=results("stack", "{network}.{station}.nc"),
        png=report(results("figures", "stack", "{network}.{station}.png"), caption="../report/stack.rst",
                   category="Stacking"),
    params:
        settings=settings_json("earth_model", "stacking"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        results("logs", "stack_station", "{network}.{station}.log"),
    shell:
        "xdisc stack --settings {params.settings:q} --rf {input.rf} --out {output.nc} --figure {output.png}"
        " 2> {log}"


rule collect_stacking_verdicts:
    input:
        all_station_stacks,
    output:
        csv=results("verdicts", "stacking.csv"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        results("logs", "collect_stacking_verdicts.log"),
    shell:
        "xdisc verdicts {input} --out {output.csv} 2> {log}"
