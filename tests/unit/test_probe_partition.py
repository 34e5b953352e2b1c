"""Pure decisions of the fast hold: chunks, worker groups, ports left out."""

import pytest
from ansible.module_utils.portpool_probe_partition import (
    assign_chunks,
    chunk_size_for,
    compact_ports,
    ends_to_hold_directly,
    kernel_may_skip,
    missing_verdict,
    parallel_workers,
    parse_refusals,
    search_never_reaches,
    split_range,
)


def test_split_range_leaves_both_ends_to_the_final_pass():
    chunks, ends = split_range(40000, 41100, chunk_ports=512)
    assert ends == [40000, 41100]
    assert chunks == [[40001, 40512], [40513, 41024], [41025, 41099]]
    covered = [port for low, high in chunks for port in range(low, high + 1)]
    assert covered == list(range(40001, 41100))


@pytest.mark.parametrize(("low", "high", "ends"), [
    (50000, 50000, [50000]), (50000, 50001, [50000, 50001]), (50000, 50002, [50000, 50002])])
def test_tiny_ranges(low, high, ends):
    chunks, got = split_range(low, high)
    assert got == ends
    assert chunks == ([] if high - low < 2 else [[low + 1, high - 1]])


def test_assign_chunks_respects_descriptors_and_spreads_over_cores():
    chunks, _ = split_range(1024, 65535, chunk_ports=512)
    groups = assign_chunks(chunks, [], per_worker=19936, parallel=2)
    assert len(groups) == 4                       # 64,510 ports need four processes
    assert [chunk for group in groups for chunk in group] == chunks
    for group in groups:
        assert sum(high - low + 1 for low, high in group) <= 19936
    small, _ = split_range(40000, 42000, chunk_ports=512)
    assert len(assign_chunks(small, [], per_worker=19936, parallel=1)) == 1
    assert len(assign_chunks(small, [], per_worker=19936, parallel=4)) == 4
    assert assign_chunks([], [], 100, 2) == []


def test_chunks_never_exceed_what_one_worker_holds():
    assert chunk_size_for(19936) == 512
    assert chunk_size_for(237) == 236
    assert chunk_size_for(1) == 2


def test_reserved_ports_do_not_count_against_a_worker():
    chunks = [[1, 100], [101, 200]]
    groups = assign_chunks(chunks, [[1, 100]], per_worker=100, parallel=1)
    assert groups == [chunks]


def test_parallel_only_for_big_pools():
    assert parallel_workers(1000, 8) == 1
    assert parallel_workers(28232, 2) == 2
    assert parallel_workers(28232, 16) == 4
    assert parallel_workers(28232, None) == 1


def test_kernel_may_skip_one_end_of_a_same_parity_range():
    assert kernel_may_skip(50000, 50002, []) == [50000, 50002]
    assert kernel_may_skip(40000, 40010, [[40000, 40000]]) == [40010]
    assert kernel_may_skip(40000, 40011, []) == []
    assert kernel_may_skip(50000, 50000, []) == []
    assert missing_verdict([], 40000, 40011, [])
    assert missing_verdict([40010], 40000, 40010, [])
    assert not missing_verdict([40011], 40000, 40011, [])
    assert not missing_verdict([40000, 40010], 40000, 40010, [])


def test_compact_ports():
    assert compact_ports([7, 1, 2, 3, 3]) == ["1-3", "7"]
    assert compact_ports([]) == []


def test_refusals_hook_names_what_it_takes():
    assert parse_refusals(" repair, userns ") == ({"repair", "userns"}, None)
    assert parse_refusals(None) == (set(), None)
    names, error = parse_refusals("repair,tcp")
    assert names is None
    assert "tcp" in error and "port_range_option" in error


def test_only_a_three_port_range_has_a_port_the_search_never_reaches():
    assert search_never_reaches(50000, 50002, []) == [50002]
    assert search_never_reaches(50000, 50002, [[50002, 50002]]) == []
    assert search_never_reaches(50000, 50004, []) == []
    assert search_never_reaches(40000, 40011, []) == []
    assert search_never_reaches(50000, 50000, []) == []


def test_reachable_ends_the_final_pass_left_out_are_held_directly():
    assert ends_to_hold_directly([40000], 40000, 40010, []) == [40000]
    assert ends_to_hold_directly([40010], 40000, 40010, []) == [40010]
    assert ends_to_hold_directly([50002], 50000, 50002, []) == []  # never handed out
    assert ends_to_hold_directly([40005], 40000, 40010, []) == []  # not an end
    assert ends_to_hold_directly([], 40000, 40010, []) == []
