"""`cft check`: what a launch would find out on paid GPUs, found out in seconds on the laptop, one check per module.

`runner.run_checks` builds the job's environment (`environment`), reads the job YAML (`job`), then runs `secrets`,
`bucket`, `recipe`, `model`, `data`, `ntfy` and `sky`; each returns one line. Import
the modules themselves (`cft.preflight.runner`): this file imports nothing, so no module of the package imports
another through it.
"""
