"""fit: where each partition lands on a target of another size (pure planning)."""

from __future__ import annotations

import pytest

from appliance.errors import SafetyRefusal
from appliance.plan.fit import FitPlan, SourcePart, fit

MiB = 1024 * 1024
LINUX = "0fc63daf-8483-4772-8e79-3d69d8477de4"
NTFS = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
SWAP = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"


def gpt(min2: int | None, min3: int | None) -> list[SourcePart]:
    """1 MiB gap, p1 ext4 100 MiB, p2 ext4 300 MiB, p3 ntfs 200 MiB, p4 swap 32 MiB."""
    return [
        SourcePart(1, "primary", LINUX, 1 * MiB, 100 * MiB, "ext4", 90 * MiB),
        SourcePart(2, "primary", LINUX, 101 * MiB, 300 * MiB, "ext4", min2),
        SourcePart(3, "primary", NTFS, 401 * MiB, 200 * MiB, "ntfs", min3),
        SourcePart(4, "primary", SWAP, 601 * MiB, 32 * MiB, "swap"),
    ]


def plan_for(target: int, min2: int | None, min3: int | None, grow: int | None = None) -> FitPlan:
    return fit(
        gpt(min2, min3),
        table="gpt",
        source_size=640 * MiB,
        target_size=target,
        sector=512,
        grow=grow,
    )


def layout(plan: FitPlan) -> dict[int, tuple[int, int]]:
    return {p.number: (p.new_start // MiB, p.new_size // MiB) for p in plan.parts}


def test_one_partition_shrinks_when_that_is_enough() -> None:
    plan = plan_for(600 * MiB, 50 * MiB, 20 * MiB)
    assert plan.resize == 3 and plan.shrunk == [3]
    parts = layout(plan)
    assert parts[1] == (1, 100) and parts[2] == (101, 300)
    assert parts[3][1] < 200 and parts[4][0] == parts[3][0] + parts[3][1]


def test_the_largest_other_partition_shrinks_when_the_last_is_not_enough() -> None:
    # 640 MiB of partitions onto 400 MiB: p3 can give 180 MiB, p2 gives the rest, p1 (the
    # smallest) is left alone
    plan = plan_for(400 * MiB, 50 * MiB, 20 * MiB)
    assert plan.shrunk == [2, 3] and plan.resize == 3
    parts = layout(plan)
    assert parts[1] == (1, 100)
    assert parts[3][1] == 20 and parts[2][1] >= 50
    assert parts[2][0] == 101 and parts[3][0] == 101 + parts[2][1]
    assert parts[4] == (parts[3][0] + 20, 32)
    end = max(start + size for start, size in parts.values())
    assert end * MiB <= 400 * MiB - 17 * 1024  # the GPT backup still fits


def test_every_partition_stays_above_its_minimum() -> None:
    with pytest.raises(SafetyRefusal, match="does not fit"):
        plan_for(250 * MiB, 250 * MiB, 20 * MiB)


def test_unknown_minimums_shrink_only_the_chosen_partition() -> None:
    plan = plan_for(500 * MiB, None, None)
    assert plan.shrunk == [3] and layout(plan)[2] == (101, 300)


def test_a_named_partition_is_the_only_one_that_shrinks() -> None:
    plan = plan_for(500 * MiB, 50 * MiB, 190 * MiB, grow=2)
    assert plan.shrunk == [2] and plan.resize == 2
    assert layout(plan)[3][1] == 200


def test_larger_target_grows_one_partition() -> None:
    plan = plan_for(1000 * MiB, None, None)
    assert plan.resize == 3 and plan.shrunk == []
    parts = layout(plan)
    assert parts[3][1] > 200 and parts[4][0] == parts[3][0] + parts[3][1]
    assert plan.to_json()["shrunk"] == []
