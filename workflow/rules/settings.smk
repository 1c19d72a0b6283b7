# The settings of each CLI call as a file (results/settings/<name>.json), input of the rules that use it.


rule write_settings:
    output:
        json=settings("{name}"),
    params:
        settings=lambda wildcards: SETTINGS[wildcards.name],
    localrule: True
    log:
        log_file("write_settings", "name"),
    benchmark:
        benchmark_file("write_settings", "name")
    conda:
        XDISC_ENV
    wildcard_constraints:
        name="|".join(SETTINGS),
    shell:
        "printf '%s\\n' {params.settings:q} > {output.json} 2> {log}"
