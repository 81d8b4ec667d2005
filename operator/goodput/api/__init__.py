"""GoodputPolicy API (group goodput.dev, version v1alpha1): models and CRD generation."""

from goodput.api.spec import (
    GROUP,
    KIND,
    PLURAL,
    SLO,
    VERSION,
    Behavior,
    GoodputPolicy,
    GoodputPolicySpec,
    KVCacheTier,
    Metrics,
    Mode,
    Pool,
    PoolRole,
    Quality,
    parse_duration,
)

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "SLO",
    "VERSION",
    "Behavior",
    "GoodputPolicy",
    "GoodputPolicySpec",
    "KVCacheTier",
    "Metrics",
    "Mode",
    "Pool",
    "PoolRole",
    "Quality",
    "parse_duration",
]
