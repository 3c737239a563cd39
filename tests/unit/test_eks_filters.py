"""hastack.ha.eks_network_problems / eks_nodegroup_sizes: plain calls."""

from __future__ import annotations

import pytest
from ansible_collections.hastack.ha.plugins.filter.eks import eks_network_problems, eks_nodegroup_sizes

ZONES = [
    {"az": "eu-west-1a", "cidr": "10.40.0.0/19"},
    {"az": "eu-west-1b", "cidr": "10.40.32.0/19"},
    {"az": "eu-west-1c", "cidr": "10.40.64.0/19"},
]


def problems(vpc: str = "10.40.0.0/16", zones: list[dict] | None = None, region: str = "eu-west-1") -> list[str]:
    return eks_network_problems(vpc, ZONES if zones is None else zones, region)


def test_good_layout_has_no_problem() -> None:
    assert problems() == []
    assert problems(zones=[*ZONES, {"az": "eu-west-1d", "cidr": "10.40.96.0/19"}]) == []


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"vpc": "10.40.0.1/16"}, "eks_multi_az_vpc_cidr '10.40.0.1/16' is not a network"),
        ({"vpc": "10.0.0.0/8"}, "eks_multi_az_vpc_cidr 10.0.0.0/8: rule: an IPv4 block from /16 to /28"),
        ({"zones": ZONES[:2]}, "at least 3 entries, each a distinct availability zone"),
        ({"zones": [*ZONES[:2], ZONES[0] | {"cidr": "10.40.64.0/19"}]}, "each a distinct availability zone"),
        ({"region": "us-east-1"}, "zone 'eu-west-1a' is not a zone of eks_multi_az_region 'us-east-1'"),
        ({"zones": [*ZONES[:2], ZONES[2] | {"cidr": "10.50.0.0/19"}]}, "is not inside eks_multi_az_vpc_cidr"),
        ({"zones": [*ZONES[:2], ZONES[2] | {"cidr": "10.40.16.0/20"}]},
         "eks_multi_az_zones[eu-west-1c].cidr 10.40.16.0/20 overlaps eks_multi_az_zones[eu-west-1a].cidr 10.40.0.0/19"),
        ({"zones": [*ZONES[:2], ZONES[2] | {"cidr": "10.40.64.0/29"}]}, "rule: /28 or larger"),
        ({"zones": [*ZONES[:2], ZONES[2] | {"cidr": "nonsense"}]}, "[eu-west-1c].cidr 'nonsense' is not"),
    ],
    ids=["host-bits", "too-big", "two-zones", "repeated-zone", "other-region", "outside", "overlap", "tiny", "garbage"],
)  # fmt: skip
def test_each_rule_is_caught_and_named(kwargs: dict, expected: str) -> None:
    found = problems(**kwargs)
    assert any(expected in line for line in found), found


def test_sizes_take_zone_overrides() -> None:
    zones = [ZONES[0], ZONES[1] | {"desired_size": 2, "max_size": "5"}]
    assert eks_nodegroup_sizes(zones, 1, 1, 3) == [
        {"az": "eu-west-1a", "min_size": 1, "desired_size": 1, "max_size": 3},
        {"az": "eu-west-1b", "min_size": 1, "desired_size": 2, "max_size": 5},
    ]
