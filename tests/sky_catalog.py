"""Slices of SkyPilot's AWS and GCP catalogs in a temporary HOME, for tests that price cloud work offline.

Columns of ~/.sky/catalogs/v8/<cloud>/vms.csv, rows written by this project from the catalog:
AWS p4de.24xlarge on-demand $27.447/h and spot $8.65/h in us-east-1 (GPUs included in the
instance price); the CPU row prices the generate VM. GCP bills an A100 apart from its host:
the a2-ultragpu-1g host ($1.09962/h, spot $0.43983) plus one A100-80GB ($1.8462/h, spot
$1.5712) in us-central1-a, as skypilot-catalog's catalogs/v7/gcp/vms.csv lists them -- the one
cloud here that sells a single A100-80GB (train_lora). Every proxy points at a dead port, so
any attempt to download a catalog fails at once instead of reaching the internet.
"""
from __future__ import annotations

import os
from pathlib import Path

AWS_VMS = """\
InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone,Arch
p4de.24xlarge,A100-80GB,8,96,1152,"{'Gpus': [{'Name': 'A100', 'Manufacturer': 'NVIDIA', 'Count': 8, 'MemoryInfo': {'SizeInMiB': 81920}}], 'TotalGpuMemoryInMiB': 655360}",27.447,8.65,us-east-1,us-east-1a,x86_64
m6i.2xlarge,,,8,32,,0.384,0.15,us-east-1,us-east-1a,x86_64
"""
P4DE_SPOT_USD = 8.65
P4DE_ON_DEMAND_USD = 27.447
GCP_VMS = """\
InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice
a2-ultragpu-1g,12.0,170.0,,,,us-central1,us-central1-a,1.09962,0.43983
,,,A100-80GB,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 81920}}]},us-central1,us-central1-a,1.8462,1.5712
"""
A100_1_GCP_SPOT_USD = 0.43983 + 1.5712  # host + GPU
A100_1_GCP_ON_DEMAND_USD = 1.09962 + 1.8462


def seeded_home(home: Path) -> dict[str, str]:
    """Write the catalog under `home`; return the environment a subprocess should get."""
    for cloud, rows in (("aws", AWS_VMS), ("gcp", GCP_VMS)):
        cat = home / ".sky" / "catalogs" / "v8" / cloud
        cat.mkdir(parents=True, exist_ok=True)
        (cat / "vms.csv").write_text(rows)
    env = {k: v for k, v in os.environ.items() if k not in ("SKY_RUNTIME_DIR", "SHEAR_RUN_DIR")}
    env.update(HOME=str(home), HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", NO_PROXY="", no_proxy="")
    return env
