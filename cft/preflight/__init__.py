"""`cft check`: what a launch would find out on paid GPUs, found out in seconds on the laptop, one check per module.

`runner.run_checks` builds the job's environment (`environment`), reads the job YAML (`job`), then runs `secrets`,
`bucket`, `recipe`, `model`, `data`, `ntfy` and `sky`; each returns one line.
"""

from cft.preflight.result import CheckResult
from cft.preflight.runner import CHECK_NAMES, PreflightOptions, run_checks

__all__ = ["CHECK_NAMES", "CheckResult", "PreflightOptions", "run_checks"]
