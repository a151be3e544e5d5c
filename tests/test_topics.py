"""Topic scheme: prefix, constant depth, kind on its own level, safe ids."""

from __future__ import annotations

import pytest

from mqtt_bridge.topics import Topics, topic_id

T = Topics("Store-1")


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (T.lane_state("L1"), "storesense/v1/store-1/lane/l1/state"),
        (T.lane_set("l1"), "storesense/v1/store-1/lane/l1/set"),
        (T.zone_state("entrance"), "storesense/v1/store-1/zone/entrance/state"),
        (T.camera_status("cam-1"), "storesense/v1/store-1/camera/cam-1/status"),
        (T.camera_heatmap("cam-1"), "storesense/v1/store-1/camera/cam-1/heatmap"),
        (T.availability("Edge-1"), "storesense/v1/store-1/edge/edge-1/availability"),
        (T.store_state(), "storesense/v1/store-1/store/all/state"),
        (T.event("queue_wait"), "storesense/v1/store-1/events/queue_wait"),
    ],
)
def test_topic_shapes(topic: str, expected: str) -> None:
    assert topic == expected


@pytest.mark.parametrize(
    "topic",
    [T.lane_state("a"), T.lane_set("a"), T.zone_state("a"), T.camera_status("a"), T.camera_heatmap("a"),
     T.availability("a"), T.store_state()],
)
def test_constant_depth_no_leading_slash_lowercase(topic: str) -> None:
    levels = topic.split("/")
    assert len(levels) == 6  # storesense / v1 / store / kind / id / leaf
    assert not topic.startswith("/") and topic == topic.lower()


def test_wildcards_match_their_topics() -> None:
    from paho.mqtt.client import topic_matches_sub

    assert topic_matches_sub(T.all_lane_sets(), T.lane_set("l7"))
    assert not topic_matches_sub(T.all_lane_sets(), T.lane_state("l7"))
    assert topic_matches_sub(T.all_lane_states(), T.lane_state("l7"))
    assert topic_matches_sub(T.all_events(), T.event("visit"))
    assert topic_matches_sub(T.everything(), T.availability("edge-1"))
    assert not topic_matches_sub(Topics("store-2").everything(), T.lane_state("l1"))


def test_custom_prefix() -> None:
    t = Topics("s1", prefix="acme/stores")
    assert t.lane_state("l1") == "acme/stores/s1/lane/l1/state"


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", " ", "x" * 65, "lane 1", "-x", "ü"])
def test_unsafe_ids_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        topic_id(bad)


@pytest.mark.parametrize("prefix", ["/storesense", "storesense/", "a/+/b", "a/#"])
def test_bad_prefix_rejected(prefix: str) -> None:
    with pytest.raises(ValueError):
        Topics("s1", prefix=prefix)
