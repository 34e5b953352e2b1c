"""The result's summary block (module_utils/portpool_result_summary.py)."""

import json

from ansible.module_utils.portpool_result_summary import (
    host_summary,
    read_summary,
    reuse_applies,
)


def facts(*, usable=28232, reuse=2, timestamps=1, delay=None, top=None, time_wait=0):
    sysctl = {"tcp_tw_reuse": reuse, "tcp_timestamps": timestamps,
              "tcp_tw_reuse_delay": delay}
    return {"sysctl": sysctl,
            "ephemeral": {"low": 32768, "high": 60999, "size": 28232,
                          "reserved_in_range": 28232 - usable, "usable": usable},
            "sockets": {"time_wait": time_wait},
            "destinations": {"top": top if top is not None else [], "count": len(top or [])}}


def dest(address="198.18.2.15", port=5432, time_wait=19647, utilisation=0.7):
    return {"address": address, "port": port, "time_wait": time_wait, "established": 0,
            "total": time_wait, "utilisation": utilisation}


def test_without_reuse_the_rate_is_usable_over_sixty_seconds():
    summary = host_summary(facts(top=[dest()]), None)
    rate = summary["rate"]
    assert rate["destination"] == "198.18.2.15:5432"
    assert rate["reuse"] is False and rate["window_seconds"] == 60.0
    assert rate["sustainable_per_s"] == 470.5        # 28232 / 60
    assert rate["current_per_s"] == 327.4            # 19647 TIME_WAIT / 60


def test_reuse_one_uses_the_delay_sysctl_in_milliseconds():
    rate = host_summary(facts(reuse=1, delay=2000, top=[dest()]), None)["rate"]
    assert rate["reuse"] is True and rate["reuse_delay_ms"] == 2000
    assert rate["reuse_delay_source"] == "sysctl"
    assert rate["sustainable_per_s"] == 14116.0      # 28232 / 2 s


def test_reuse_without_the_delay_sysctl_uses_one_second():
    rate = host_summary(facts(reuse=1, delay=None, top=[dest()]), None)["rate"]
    assert rate["reuse_delay_ms"] == 1000 and rate["reuse_delay_source"] == "default"
    assert rate["sustainable_per_s"] == 28232.0


def test_reuse_needs_timestamps_and_two_applies_to_loopback_only():
    assert reuse_applies({"tcp_tw_reuse": 1, "tcp_timestamps": 0}, "198.18.0.1") is False
    assert reuse_applies({"tcp_tw_reuse": 2, "tcp_timestamps": 1}, "198.18.0.1") is False
    assert reuse_applies({"tcp_tw_reuse": 2, "tcp_timestamps": 1}, "127.0.0.5") is True
    assert reuse_applies({"tcp_tw_reuse": 2, "tcp_timestamps": 1}, "::ffff:127.0.0.1") is True
    assert reuse_applies({"tcp_tw_reuse": 0, "tcp_timestamps": 1}, "127.0.0.5") is False
    assert reuse_applies({}, "127.0.0.5") is None


def test_no_destination_gives_a_current_rate_of_zero():
    rate = host_summary(facts(top=[]), None)["rate"]
    assert rate["destination"] is None and rate["current_per_s"] == 0.0
    assert rate["sustainable_per_s"] == 470.5


def test_probe_measurement_is_kept_with_missing_ports():
    probe = {"mode": "lab", "scope": "full", "expected": 1000, "matches_expected": False,
             "hold": {"established": 999, "expected": 1000, "stopped_by": "EADDRNOTAVAIL",
                      "lost": 0, "measured_range": [40000, 40999], "missing_ports": [40000],
                      "low_end_may_be_skipped": True},
             "summary": "held 999 of 1000"}
    measured = host_summary(facts(), probe)["probe"]
    assert (measured["held"], measured["expected"], measured["stopped_by"]) == \
        (999, 1000, "EADDRNOTAVAIL")
    assert measured["missing_ports"] == [40000] and measured["low_end_may_be_skipped"] is True
    assert measured["matches_expected"] is False and measured["text"] == "held 999 of 1000"
    assert host_summary(facts(), {"hold": {"established": 5}})["probe"]["missing_ports"] is None
    assert host_summary(facts(), None)["probe"] is None


def test_destinations_are_sorted_typed_and_clamped():
    top = [dest(utilisation=0.1), "junk", dest(address="198.18.0.9", utilisation=1e308),
           dest(utilisation=float("nan")), dest(utilisation=-1)]
    summary = host_summary(facts(top=top), None)
    assert [d["utilisation"] for d in summary["destinations"]] == [100.0, 0.1]
    json.dumps(summary, allow_nan=False)


def test_no_facts_give_nulls_not_errors():
    summary = host_summary(None, None)
    assert summary["pool"]["usable"] is None and summary["rate"] is None
    assert summary["destinations"] == []


def test_read_summary_retypes_a_hostile_block():
    block = {"pool": {"usable": "1000", "size": 1e308}, "time_wait": True,
             "rate": {"sustainable_per_s": float("inf"), "current_per_s": 3,
                      "destination": ["x"], "reuse": "yes"},
             "probe": {"held": 2 ** 80, "missing_ports": ["1", 2, None] + [3] * 500,
                       "stopped_by": 7}}
    read = read_summary(block)
    assert read["pool"]["usable"] is None and read["pool"]["size"] is None
    assert read["time_wait"] is None
    assert read["rate"]["sustainable_per_s"] is None and read["rate"]["current_per_s"] == 3.0
    assert read["rate"]["destination"] is None and read["rate"]["reuse"] is None
    assert read["probe"]["held"] is None and read["probe"]["stopped_by"] is None
    assert read["probe"]["missing_ports"] == [2] + [3] * 97  # the first 100 entries, typed
    assert read_summary(None) is None and read_summary([1]) is None
