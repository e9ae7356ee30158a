"""A slice of SkyPilot's AWS catalog in a temporary HOME, for tests that price cloud work offline.

Columns of ~/.sky/catalogs/v8/aws/vms.csv, rows written by this project: p4de.24xlarge
on-demand $27.447/h and spot $8.65/h in us-east-1 as seen in the catalog; the CPU row prices
the generate VM. Every proxy points at a dead port, so any attempt to download a catalog
fails at once instead of reaching the internet.
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


def seeded_home(home: Path) -> dict[str, str]:
    """Write the catalog under `home`; return the environment a subprocess should get."""
    cat = home / ".sky" / "catalogs" / "v8" / "aws"
    cat.mkdir(parents=True, exist_ok=True)
    (cat / "vms.csv").write_text(AWS_VMS)
    env = {k: v for k, v in os.environ.items() if k not in ("SKY_RUNTIME_DIR", "SHEAR_RUN_DIR")}
    env.update(HOME=str(home), HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", NO_PROXY="", no_proxy="")
    return env
