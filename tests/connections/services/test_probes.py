"""Probes: the URL a probe calls, and the small sample of the answer that is kept."""
import json

import pytest

from connections.services import probes


def test_an_absolute_test_endpoint_stands_alone(integration):
    integration.test_endpoint = "https://status.example.org/health"

    assert probes.endpoint_url(integration, integration.test_endpoint) == "https://status.example.org/health"
    integration.api_base_url = "https://api.example.com/v2/"
    assert probes.endpoint_url(integration, "/ping") == "https://api.example.com/v2/ping"
    assert probes.endpoint_url(integration, "") == "https://api.example.com/v2/"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[1, 2, 3, 4, 5]", [1, 2, 3]),
        (b'{"a": 1}', {"a": 1}),
        (b"not json", None),
        (b"\xff\xfe", None),
        (json.dumps(["y" * 3000]).encode(), {"truncated": True}),
    ],
)
def test_sample_is_small_json_or_nothing(body, expected):
    assert probes.make_sample(body) == expected
