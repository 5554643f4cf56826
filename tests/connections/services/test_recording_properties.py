"""Property tests: whatever an upstream answers (status, headers, body: raw bytes, JSON nested thousands
deep, NUL, huge numbers, usage headers past every column), the scheduled checks of a batch that mixes
tenants are all recorded, the poll task ends without an unhandled exception, and the usage flush writes
the other tenant's counts.
"""
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connections import tasks
from connections.models import ConnectionCheck, ExternalStatus, Integration, UsageDaily
from connections.services import usage
from tests.connections.factories import IntegrationFactory
from tests.strategies import json_leaves, json_values

pytestmark = pytest.mark.django_db

NUMBERISH = st.one_of(st.text(string.digits + "-.e+", max_size=40), st.sampled_from(
    # Arabic-Indic digits as their UTF-8 bytes on the wire (a header value the test server can send).
    ["99999999999999999999999999", "1e400", "-1", "NaN", "Infinity", "0x10", "١٢٣".encode().decode("latin-1")]))


@st.composite
def answers(draw) -> tuple[int, bytes, dict]:
    kind = draw(st.sampled_from(["bytes", "json", "deep", "statuses", "nul"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=3000))
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "deep":
        depth = draw(st.integers(min_value=1, max_value=20_000))
        body = b"[" * depth + b"]" * depth
    elif kind == "statuses":
        items = draw(st.lists(st.fixed_dictionaries({"id": json_leaves, "status": json_values}), max_size=8))
        body = json.dumps({"items": items}).encode()
    else:
        body = b'{"items": [{"id": "a\\u0000", "status": "op\\u0000en"}], "k\\u0000": "\\u0000"}'
    status = draw(st.sampled_from([200, 200, 201, 204, 301, 400, 401, 404, 429, 500, 503]))
    headers = {"X-Usage-Tokens": draw(NUMBERISH), "X-Usage-Cost": draw(NUMBERISH)}
    return status, body, headers


@pytest.fixture
def integrations(settings, tenant, other_tenant, provider, httpserver):
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    base = httpserver.url_for("/").rstrip("/")
    common = {"provider": provider, "api_base_url": base, "retry_count": 0, "timeout_seconds": 5,
              "status_endpoint": "/hostile", "status_items_path": "items"}
    hostile = IntegrationFactory(tenant=tenant, name="Hostile", test_endpoint="/hostile", **common)
    others = [IntegrationFactory(tenant=other_tenant, name=f"Other {k}", test_endpoint="/ok", **common)
              for k in range(2)]
    return hostile, others


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(answer=answers())
def test_a_hostile_answer_never_stops_the_batch_or_the_poll(httpserver, integrations, answer):
    hostile, others = integrations
    status, body, headers = answer
    httpserver.clear()
    httpserver.expect_request("/hostile").respond_with_data(body, status=status, headers=headers,
                                                            content_type="application/json")
    httpserver.expect_request("/ok").respond_with_json({"ok": True}, headers={"X-Usage-Tokens": "5"})
    before = {i.pk: ConnectionCheck.objects.filter(integration=i).count() for i in (hostile, *others)}
    usage_before = {i.pk: sum(UsageDaily.objects.filter(integration=i).values_list("tokens", flat=True))
                    for i in others}

    ran = tasks.run_health_checks([str(i.pk) for i in (hostile, *others)])  # the task, as a worker runs it

    assert ran == 3
    for integration in (hostile, *others):
        assert ConnectionCheck.objects.filter(integration=integration).count() == before[integration.pk] + 1
    assert set(Integration.objects.filter(pk__in=[i.pk for i in others]).values_list("health_state", flat=True)) \
        == {"healthy"}
    tasks.run_status_poll(str(hostile.pk))  # a failed poll is logged by the task, never raised
    stored = ExternalStatus.objects.filter(integration=hostile).values_list("external_id", "raw_status")
    assert not [pair for pair in stored if "\x00" in pair[0] + pair[1]]
    usage.flush()
    for integration in others:
        tokens = sum(UsageDaily.objects.filter(integration=integration).values_list("tokens", flat=True))
        assert tokens == usage_before[integration.pk] + 5
