"""Probes: calling an integration's test endpoint and reading the answer into a ProbeResult.

A probe talks to the outside only (through the integration's limits and the outbound
client) and touches no database while requests are in flight, so many run at once on one
event loop (``outbound.request_many``); ``checks.checks_record`` writes the outcomes.
"""
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urljoin

from django.utils import timezone

from integrations_site import bounds, outbound

from .. import adapters
from ..choices import CheckError
from ..models import Credential, Integration
from . import usage

SAMPLE_ITEMS = 3
SAMPLE_BYTES = 2048


@dataclass
class ProbeResult:
    success: bool
    status_code: int | None = None
    latency_ms: int | None = None
    attempts: int = 0
    error_code: str = ""
    error_message: str = ""
    sample: object = None
    url: str = ""
    started_at: object = field(default_factory=timezone.now)
    finished_at: object = None

    @property
    def error(self) -> dict | None:
        return {"code": self.error_code, "message": self.error_message} if self.error_code else None


def endpoint_url(integration: Integration, endpoint: str) -> str | None:
    """``endpoint`` joined to the base URL (an absolute endpoint stands alone)."""
    if endpoint.startswith(("http://", "https://")):
        return endpoint
    if not integration.api_base_url:
        return None
    return urljoin(integration.api_base_url.rstrip("/") + "/", endpoint.lstrip("/")) if endpoint else (
        integration.api_base_url
    )


def with_query(url: str, params: dict) -> str:
    """``url`` with ``params`` added to its query string."""
    return url + ("&" if "?" in url else "?") + urlencode(params) if params else url


def make_sample(body: bytes):
    """At most 3 items and 2 KB of a JSON answer (bounded: integrations_site.bounds), else None."""
    try:
        data = bounds.loads(body)
    except bounds.JsonRefused:
        return None
    if isinstance(data, list):
        data = data[:SAMPLE_ITEMS]
    elif isinstance(data, dict):
        data = {k: (v[:SAMPLE_ITEMS] if isinstance(v, list) else v) for k, v in data.items()}
    while len(json.dumps(data, default=str)) > SAMPLE_BYTES:
        if isinstance(data, list) and len(data) > 1:
            data = data[:-1]
        elif isinstance(data, dict) and (longest := _longest_list_key(data)) is not None:
            data = {**data, longest: data[longest][:-1]}  # trim the object's lists before dropping keys
        elif isinstance(data, dict) and len(data) > 1:
            data = dict(list(data.items())[:-1])
        else:
            return {"truncated": True}
    return data


def _longest_list_key(data: dict):
    """The key of the largest list with more than one item in ``data``, or None."""
    lists = [(len(json.dumps(v, default=str)), k) for k, v in data.items() if isinstance(v, list) and len(v) > 1]
    return max(lists)[1] if lists else None


def probe(integration: Integration, credential: Credential | None) -> ProbeResult:
    """Call the integration's test endpoint once (with its retries), within the integration's limits."""
    return probe_many([(integration, credential)])[0]


def probe_many(
    pairs: list[tuple[Integration, Credential | None]], *, concurrency: int = 1, process_wide: bool = False
) -> list[ProbeResult]:
    """``probe`` for many (integration, credential) pairs (``concurrency`` as in ``outbound.request_many``)."""
    results, waiting, calls = [None] * len(pairs), [], []
    for index, (integration, credential) in enumerate(pairs):
        url = endpoint_url(integration, integration.test_endpoint or "")
        if not url:
            results[index] = _not_configured("Set api_base_url (and test_endpoint) before testing the connection.")
        elif integration.provider.auth_type != "none" and (credential is None or not credential.is_set):
            results[index] = _not_configured("Set the integration's credentials before testing the connection.")
        else:
            waiting.append(index)
            options = adapters.request_options(integration, credential)
            calls.append((integration, {"method": "GET", "url": url, **options}))
    for index, (_, call), outcome in zip(
        waiting, calls, usage.metered_many(calls, concurrency=concurrency, process_wide=process_wide), strict=True
    ):
        results[index] = _probe_result(call["url"], outcome)
    return results


def _not_configured(message: str) -> ProbeResult:
    now = timezone.now()
    return ProbeResult(success=False, error_code=CheckError.NOT_CONFIGURED, error_message=message,
                       started_at=now, finished_at=now)


def _probe_result(url: str, outcome) -> ProbeResult:
    """The ProbeResult of one answer (or the OutboundError that stood for it)."""
    if outcome.started_at is None or outcome.elapsed_ms is None:  # refused before it was sent
        started = finished = timezone.now()
    else:
        started = datetime.fromtimestamp(outcome.started_at, tz=UTC)
        finished = started + timedelta(milliseconds=outcome.elapsed_ms)
    if isinstance(outcome, outbound.OutboundError):
        return ProbeResult(
            success=False, error_code=outcome.code, error_message=bounds.clean_text(outcome.message, 500), url=url,
            started_at=started, finished_at=finished,
            latency_ms=outcome.elapsed_ms,
        )
    result = ProbeResult(
        success=200 <= outcome.status_code < 300, status_code=outcome.status_code,
        latency_ms=outcome.elapsed_ms, attempts=outcome.attempts, url=url, started_at=started,
        finished_at=finished,
    )
    if outcome.status_code in (401, 403):
        result.error_code = CheckError.INVALID_CREDENTIALS
        result.error_message = f"The API answered {outcome.status_code}: the credentials were refused."
    elif not result.success:
        result.error_code = CheckError.UNEXPECTED_STATUS
        result.error_message = f"The API answered {outcome.status_code}."
    else:
        result.sample = make_sample(outcome.body)
    return result
