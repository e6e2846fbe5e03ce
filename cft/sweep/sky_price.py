"""Run by SkyPilot's own interpreter (never imported by cft): the hourly price of each task's GPU candidates.

    <skypilot venv>/bin/python cft/sweep/sky_price.py jobs/pipeline.yaml BUCKET=s3://b/p [KEY=VALUE ...]

Loads the YAML with SkyPilot's parser and asks SkyPilot's catalog for each candidate's price, but only from a
catalog already on this machine (`~/.sky/catalogs`, fetched by e.g. `sky show-gpus`): a sweep's dry run must not
wait on the network. Prints one JSON line: {"tasks": [{"name", "candidates": [{"infra", "accelerators",
"use_spot", "hourly", "why"}]}]}; `hourly` is null where SkyPilot cannot tell offline, and `why` says why.
"""

import json
import os
import sys


def _candidates(task):
    resources = task.resources
    return list(resources) if isinstance(resources, (list, tuple)) else sorted(resources, key=repr)


def _price(resource):
    from sky import catalog
    from sky.catalog import common

    cloud = str(resource.cloud).lower() if resource.cloud else None
    accelerators = resource.accelerators or {}
    if not cloud or len(accelerators) != 1:
        return None, "no single cloud and GPU to price"
    if not os.path.exists(common.get_catalog_path(f"{cloud}/vms.csv")):
        return None, f"no local {cloud} catalog (`sky show-gpus --infra {cloud}` fetches it)"
    (name, count), = accelerators.items()
    try:
        # SkyPilot's own path: the cheapest instance type with these GPUs, then its hourly price.
        types, _ = catalog.get_instance_type_for_accelerator(name, count, use_spot=bool(resource.use_spot),
                                                             clouds=cloud)
        if not types:
            return None, f"no {name}:{count} instance in the local {cloud} catalog"
        return float(catalog.get_hourly_cost(types[0], bool(resource.use_spot), None, None, clouds=cloud)), None
    except Exception as error:  # noqa: BLE001 - any catalog problem means "unknown", with the reason
        return None, f"{type(error).__name__}: {error}".splitlines()[0]


def main(path, env):
    from sky.utils import dag_utils

    dag = dag_utils.load_chain_dag_from_yaml(path, env_overrides=env or None)
    tasks = []
    for task in dag.tasks:
        rows = []
        for resource in _candidates(task):
            hourly, why = _price(resource)
            accelerators = ",".join(f"{k}:{v}" for k, v in (resource.accelerators or {}).items())
            rows.append({"infra": str(resource.cloud).lower() if resource.cloud else None,
                         "accelerators": accelerators or None, "use_spot": bool(resource.use_spot),
                         "num_nodes": task.num_nodes, "hourly": hourly, "why": why})
        tasks.append({"name": task.name, "candidates": rows})
    print(json.dumps({"tasks": tasks}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], [tuple(kv.split("=", 1)) for kv in sys.argv[2:]]))
