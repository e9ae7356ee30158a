"""GPU prices from SkyPilot's catalog, never from a hand-typed table.

    usd_per_hour, instance, source = gpu_price("A100-80GB:8", cloud="aws", region="us-east-1", spot=True)
    usd_per_hour, source = gpu_hourly_usd(budgets.reference, "A100-80GB:4", spot=True)  # with the fallback

SkyPilot keeps one CSV per cloud in `~/.sky/catalogs/v8/<cloud>/vms.csv` (or under
`$SKY_RUNTIME_DIR`) and downloads it on first use. A machine with no catalog and no network
must not hang on that download, so we look for the file first and only then ask SkyPilot;
`gpu_hourly_usd` falls back to `reference.gpu_hourly_usd_fallback` in budgets.yaml and
says so in its `source`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from lib.core.errors import UserError


def parse_accelerator(spec: str) -> tuple[str, int]:
    """'A100-80GB:8' -> ('A100-80GB', 8)."""
    name, _, count = str(spec).partition(":")
    try:
        n = int(count or 1)
    except ValueError:
        raise UserError(f"bad accelerator {spec!r}: write NAME:COUNT like A100-80GB:8") from None
    if not name or n < 1:
        raise UserError(f"bad accelerator {spec!r}: write NAME:COUNT like A100-80GB:8")
    return name, n


def catalog_file(cloud: str) -> Path:
    """Where SkyPilot reads `cloud`'s catalog (imports sky, ~4 s the first time)."""
    from sky.catalog import common

    return Path(common.get_catalog_path(f"{cloud.lower()}/vms.csv"))


def gpu_price(accelerator: str | None = "A100-80GB:8", *, cloud: str = "aws", region: str | None = None,
              spot: bool = True, instance_type: str | None = None) -> tuple[float, str, str]:
    """Hourly price of ONE node carrying `accelerator` (or of `instance_type`) from SkyPilot's catalog."""
    path = catalog_file(cloud)
    if not path.is_file():
        raise UserError(
            f"SkyPilot's {cloud} catalog is not on this machine ({path}): run `sky show-gpus --infra {cloud}` "
            "once with network access, or set reference.gpu_hourly_usd_fallback in budgets.yaml"
        )
    from sky import catalog

    if instance_type is None:
        if not accelerator:
            raise UserError("no accelerator or instance type to price: set resources.accelerators in the task YAML")
        name, count = parse_accelerator(accelerator)
        types, fuzzy = catalog.get_instance_type_for_accelerator(
            name, count, use_spot=spot, region=region, clouds=cloud)
        if not types:
            hint = f" (close: {', '.join(map(str, fuzzy[:3]))})" if fuzzy else ""
            raise UserError(f"no {cloud} instance with {accelerator}{' in ' + region if region else ''} in "
                            f"SkyPilot's catalog{hint}: change the accelerator, cloud or region")
        # Several instance types can carry the same GPUs: price the cheapest, as SkyPilot's optimizer would.
        # SkyPilot's own rule (Resources.get_cost): the host VM plus the accelerators, which some
        # clouds bill apart (GCP's A100 rows); AWS's instance price already includes its GPUs (0 here).
        from sky.utils import registry

        gpus = registry.CLOUD_REGISTRY.from_str(cloud).accelerators_to_hourly_cost({name: count}, spot, region)
        priced = [(catalog.get_hourly_cost(t, spot, region, None, clouds=cloud) + gpus, t) for t in types]
        usd, instance_type = min(priced)
    else:
        usd = catalog.get_hourly_cost(instance_type, spot, region, None, clouds=cloud)
    kind = "spot" if spot else "on-demand"
    source = f"SkyPilot catalog {cloud}/{instance_type} {kind} {region or 'cheapest region'}"
    return float(usd), instance_type, source


def gpu_hourly_usd(reference, accelerator: str, *, cloud: str | None = None, region: str | None = None,
                   spot: bool = True) -> tuple[float, str]:
    """Hourly price of ONE node carrying `accelerator` ('A100-80GB:8') and where it comes from.

    cloud/region None: on a SkyPilot node, the cloud and region it runs in (SKYPILOT_CLUSTER_INFO),
    else reference.cloud in the cheapest region. SkyPilot's catalog when it is on this machine; otherwise budgets.yaml's
    reference.gpu_hourly_usd_fallback, scaled by this node's GPU count over the reference
    node's (the fallback prices reference.gpu), and the source says so. Never raises for a
    missing catalog: a paid run must not stop over a price lookup. The one price rule for the
    trainer's ledger intervals and the budget report's reference column.
    """
    if cloud is None:
        try:
            info = json.loads(os.environ.get("SKYPILOT_CLUSTER_INFO") or "{}")
        except json.JSONDecodeError:
            info = {}
        cloud, region = info.get("cloud"), region or info.get("region")
    cloud = str(cloud or reference["cloud"]).lower()
    try:
        usd, _, source = gpu_price(accelerator, cloud=cloud, region=region, spot=spot)
        return usd, source
    except (UserError, ImportError, ValueError, KeyError) as e:  # no catalog here: the documented fallback
        why = "no SkyPilot catalog here" if isinstance(e, UserError) else f"catalog lookup failed: {e.__class__.__name__}"
        _, count = parse_accelerator(accelerator)
        _, ref_count = parse_accelerator(reference["gpu"])
        usd = float(reference["gpu_hourly_usd_fallback"]) * count / ref_count
        scale = "" if count == ref_count else f" x {count}/{ref_count} GPUs"
        return usd, f"budgets.yaml reference.gpu_hourly_usd_fallback{scale} ({why})"


def reference_gpu_hourly(reference: dict) -> tuple[float, str]:
    """Hourly price of the reference GPU node in budgets.yaml, from the catalog when present."""
    return gpu_hourly_usd(reference, reference["gpu"], cloud=reference["cloud"], region=reference.get("region"),
                          spot=reference["spot"])
