# The settings of each CLI call as a file (results/settings/<name>.json), input of the rules that use it.


rule write_settings:
    output:
        json=settings("{name}"),
    log:
        log_file("write_settings", "name"),
    benchmark:
        benchmark_file("write_settings", "name")
    wildcard_constraints:
        name="|".join(SETTINGS),
    localrule: True
    conda:
        XDISC_ENV
    params:
        settings=lambda wildcards: SETTINGS[wildcards.name],
    shell:
        "printf '%s\\n' {params.settings:q} > {output.json} 2> {log}"
