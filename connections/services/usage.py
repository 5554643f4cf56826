"""Usage counting and per-integration limits.

Counting is batched: ``record`` adds to a per-process buffer that a
background thread flushes to UsageDaily every ``USAGE_FLUSH_SECONDS`` (one
UPDATE per integration and day, not one write per request). The requests of
the current minute are also counted in the shared cache, which is what the
requests-per-minute limit reads. An outbound call past a hard limit is
refused with 429 ``LIMIT_EXCEEDED``, audited once per window.
"""
import logging
import time
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from audit.services import SYSTEM, audit_record
from integrations_site import bounds, outbound
from integrations_site.batching import BackgroundBatcher

from ..models import Integration, UsageDaily

logger = logging.getLogger("connections.usage")

COUNTERS = ("requests", "errors", "webhooks", "tokens", "cost")


def _flush(items: list) -> None:
    totals: dict[tuple, dict] = defaultdict(lambda: {name: 0 for name in COUNTERS})
    minutes: dict[tuple, int] = defaultdict(int)
    for (integration_id, tenant_id, day), deltas, minute in items:
        row = totals[(integration_id, tenant_id, day)]
        for name, value in deltas.items():
            row[name] += value
        if minute is not None and deltas.get("requests"):
            minutes[(integration_id, minute)] += deltas["requests"]
    _count_minutes(minutes)
    rows = [(key, deltas) for key, deltas in totals.items() if any(deltas.values())]
    for start in range(0, len(rows), UPSERT_ROWS):
        _add_all(rows[start:start + UPSERT_ROWS])


UPSERT_ROWS = 500


def _add_all(rows: list) -> None:
    """Add each (integration, day)'s counts to its row, made when missing, in one statement.

    A row per statement cost more than the scheduled checks that counted it.
    Counts of integrations deleted since are dropped; should one be deleted
    while the statement runs, the rows are written one by one.
    """
    ids = Integration.objects.filter(pk__in={key[0] for key, _ in rows}).values_list("pk", flat=True)
    existing = {str(pk) for pk in ids}
    rows = [(key, deltas) for key, deltas in rows if str(key[0]) in existing]
    if not rows:
        return
    fields = [UsageDaily._meta.get_field(name) for name in ("tenant", "integration", "date", *COUNTERS, "updated_at")]
    now = timezone.now()
    params = []
    for (integration_id, tenant_id, day), deltas in rows:
        values = [tenant_id, integration_id, day, *(deltas[name] for name in COUNTERS), now]
        params.extend(field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True))
    quote = connection.ops.quote_name
    table = quote(UsageDaily._meta.db_table)
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES {', '.join([placeholders] * len(rows))} "
        f"ON CONFLICT ({quote('integration_id')}, {quote('date')}) DO UPDATE SET "
        + ", ".join(f"{quote(name)} = {table}.{quote(name)} + excluded.{quote(name)}" for name in COUNTERS)
        + f", {quote('updated_at')} = excluded.{quote('updated_at')}"
    )
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
    except Exception:  # noqa: BLE001 (whatever broke the statement, the rows are tried one by one)
        # One row the statement cannot write (an integration deleted meanwhile, a sum past its column:
        # a DataError on PostgreSQL, an OverflowError binding it on SQLite) must not lose the other
        # tenants' counts: each row alone, and only a failing one is dropped.
        for (integration_id, tenant_id, day), deltas in rows:
            try:
                with transaction.atomic():
                    _apply(integration_id, tenant_id, day, deltas)
            except Exception as exc:  # noqa: BLE001
                logger.error("connections.usage.row_dropped integration=%s day=%s error=%s counts=%s",
                             integration_id, day, type(exc).__name__, deltas)


def _apply(integration_id, tenant_id, day, deltas: dict) -> None:
    updates = {name: F(name) + value for name, value in deltas.items() if value}
    if not updates:
        return
    for _ in range(2):
        if UsageDaily.objects.filter(integration_id=integration_id, date=day).update(**updates):
            return
        try:
            with transaction.atomic():
                UsageDaily.objects.create(integration_id=integration_id, tenant_id=tenant_id, date=day,
                                          **{k: v for k, v in deltas.items()})
            return
        except IntegrityError:  # another process created the row first: add to it
            continue


batcher = BackgroundBatcher(
    "usage-flush", _flush,
    interval=lambda: settings.USAGE_FLUSH_SECONDS, max_items=lambda: settings.USAGE_FLUSH_MAX_ITEMS,
)


def flush() -> None:
    """Write what this process has counted (tests, shutdown)."""
    batcher.flush()


def _minute_key(integration_id, minute: int | None = None) -> str:
    return f"usage:rpm:{integration_id}:{minute if minute is not None else int(time.time() // 60)}"


def _count_minute(integration_id, requests: int, minute: int | None = None) -> None:
    key = _minute_key(integration_id, minute)
    try:
        if not cache.add(key, requests, timeout=120):
            cache.incr(key, requests)
    except Exception:
        logger.warning("connections.usage.cache_unavailable integration=%s", integration_id)


def _count_minutes(counts: dict) -> None:
    """``_count_minute`` for many (integration, minute) pairs: one round trip on Redis."""
    client = getattr(getattr(cache, "client", None), "get_client", None)
    if client is None:  # another cache backend: one call each
        for (integration_id, minute), requests in counts.items():
            _count_minute(integration_id, requests, minute)
        return
    try:
        pipe = client(write=True).pipeline(transaction=False)
        for (integration_id, minute), requests in counts.items():
            key = cache.make_key(_minute_key(integration_id, minute))
            pipe.incrby(key, requests)
            pipe.expire(key, 120)
        pipe.execute()
    except Exception:
        logger.warning("connections.usage.cache_unavailable integrations=%s", len(counts))


def record(integration_id, tenant_id, *, requests: int = 0, errors: int = 0, webhooks: int = 0, tokens: int = 0,
           cost: Decimal | int = 0, enforce_rate: bool = False) -> None:
    """Count usage of an integration in memory.

    The requests of this minute reach the shared cache at once when a rate
    limit must be enforced (``enforce_rate``), with the next flush otherwise.
    """
    day = timezone.localdate()
    minute = int(time.time() // 60)
    if requests and enforce_rate:
        _count_minute(integration_id, requests, minute)
    batcher.add(((integration_id, tenant_id, day),
                 {"requests": requests, "errors": errors, "webhooks": webhooks, "tokens": tokens,
                  "cost": Decimal(cost)}, None if enforce_rate else minute))


# What one answer may report: far above any real call, and small enough that a day's sum of such
# answers still fits its column (UsageDaily.tokens is a bigint, cost has 8 integer digits).
MAX_TOKENS_PER_CALL = 10**12
MAX_COST_PER_CALL = Decimal(10_000)


def reported_usage(integration: Integration, headers: dict) -> tuple[int, Decimal]:
    """Tokens and cost a response reports in the integration's usage headers.

    The upstream chooses these values: they are clamped to what one call may
    report (0 when absent, negative or malformed), so one answer cannot make a
    batched flush of every tenant's counters fail.
    """
    token_header = (integration.settings or {}).get("usage_tokens_header", "X-Usage-Tokens").lower()
    cost_header = (integration.settings or {}).get("usage_cost_header", "X-Usage-Cost").lower()
    tokens = bounds.clamp_int(headers.get(token_header, 0), 0, MAX_TOKENS_PER_CALL)
    cost = bounds.clamp_decimal(headers.get(cost_header, 0), Decimal(0), MAX_COST_PER_CALL, 6)
    return tokens, cost


def requests_this_minute(integration: Integration) -> int:
    try:
        return int(cache.get(_minute_key(integration.pk)) or 0)
    except Exception:
        return 0


def month_totals(integration: Integration, today: date | None = None) -> dict:
    """Tokens and cost of the current month from the flushed rows."""
    today = today or timezone.localdate()
    totals = UsageDaily.objects.filter(
        integration=integration, date__gte=today.replace(day=1), date__lte=today
    ).aggregate(tokens=Sum("tokens"), cost=Sum("cost"))
    return {"tokens": int(totals["tokens"] or 0), "cost": Decimal(totals["cost"] or 0)}


def _month_totals_cached(integration: Integration) -> dict:
    key = f"usage:month:{integration.pk}:{timezone.localdate():%Y-%m}"
    try:
        cached = cache.get(key)
    except Exception:
        cached = None
    if cached is None:
        cached = month_totals(integration)
        try:
            cache.set(key, cached, timeout=30)
        except Exception:
            logger.warning("connections.usage.cache_unavailable integration=%s", integration.pk)
    return cached


def _percent(used, limit) -> float | None:
    if limit in (None, 0):
        return None
    return round(float(used) * 100 / float(limit), 2)


def limits(integration: Integration) -> dict:
    """Usage against each limit, in percent (None where no limit is set)."""
    month = month_totals(integration)
    rate = requests_this_minute(integration)
    budget_limit = integration.limit_monthly_budget
    return {
        "budget_percent": _percent(month["cost"], budget_limit),
        "token_percent": _percent(month["tokens"], integration.limit_tokens),
        "rate_percent": _percent(rate, integration.limit_requests_per_minute),
        "budget": {"used": str(month["cost"].quantize(Decimal("0.01"))),
                   "limit": str(budget_limit) if budget_limit is not None else None},
        "tokens": {"used": month["tokens"], "limit": integration.limit_tokens},
        "rate": {"used": rate, "limit": integration.limit_requests_per_minute},
    }


def limit_problem(integration: Integration) -> tuple[str, str] | None:
    """(limit name, message) when an outbound call would pass a hard limit, else None."""
    if integration.limit_requests_per_minute is not None:
        if requests_this_minute(integration) >= integration.limit_requests_per_minute:
            return "rate", f"The limit of {integration.limit_requests_per_minute} requests per minute is reached."
    if integration.limit_monthly_budget is None and integration.limit_tokens is None:
        return None
    month = _month_totals_cached(integration)
    if integration.limit_monthly_budget is not None and month["cost"] >= integration.limit_monthly_budget:
        return "budget", f"The monthly budget of {integration.limit_monthly_budget} is spent."
    if integration.limit_tokens is not None and month["tokens"] >= integration.limit_tokens:
        return "tokens", f"The monthly limit of {integration.limit_tokens} tokens is reached."
    return None


def audit_refusal_once(integration: Integration, limit: str, message: str) -> None:
    """One audit event per integration, limit and window (a minute for the rate, a month otherwise)."""
    window = int(time.time() // 60) if limit == "rate" else timezone.localdate().strftime("%Y-%m")
    key = f"usage:refused:{integration.pk}:{limit}:{window}"
    try:
        first = cache.add(key, 1, timeout=120 if limit == "rate" else 32 * 86400)
    except Exception:
        first = True
    if first:
        audit_record(actor=SYSTEM, action="integration.limit_exceeded", target=integration, outcome="denied",
                     changes={"limit": limit, "message": message})


def daily(integration: Integration, start: date, end: date) -> list[UsageDaily]:
    return list(UsageDaily.objects.filter(integration=integration, date__gte=start, date__lte=end).order_by("date"))


def default_range() -> tuple[date, date]:
    today = timezone.localdate()
    return today - timedelta(days=29), today


class LimitRefused(outbound.OutboundError):
    """An outbound call refused before it was sent: a hard limit is reached."""

    code = "LIMIT_EXCEEDED"


def metered_request(integration: Integration, method: str, url: str, *, headers: dict, body: bytes | None = None,
                    retries: int | None = None, **tls) -> outbound.OutboundResponse:
    """The outbound client, after the integration's limits, counting what the call used
    (``tls``: the ``ca_bundle_pem`` / ``client_cert_pem`` / ``client_key_pem`` of ``outbound.request``)."""
    call = {"method": method, "url": url, "headers": headers, "body": body, **tls}
    if retries is not None:
        call["retries"] = retries
    outcome = metered_many([(integration, call)])[0]
    if isinstance(outcome, outbound.OutboundError):
        raise outcome
    return outcome


def metered_many(calls: list[tuple[Integration, dict]], *, concurrency: int = 1, process_wide: bool = False) -> list:
    """Several metered requests sent at once (``outbound.request_many``).

    ``calls`` pairs an integration with keyword arguments of ``outbound.request``
    (its timeout and retry count apply unless given). The answer is, in order,
    each call's response or the OutboundError it raised; a call past a hard
    limit is refused with LimitRefused before anything is sent. ``concurrency``
    and ``process_wide`` are those of ``outbound.request_many``.
    """
    outcomes, sent, requests = [None] * len(calls), [], []
    for index, (integration, call) in enumerate(calls):
        problem = limit_problem(integration)
        if problem is not None:
            audit_refusal_once(integration, *problem)
            outcomes[index] = LimitRefused(problem[1])
            continue
        sent.append(index)
        requests.append({"timeout": integration.timeout_seconds, "retries": integration.retry_count, **call})
    answers = outbound.request_many(requests, concurrency=concurrency, process_wide=process_wide)
    for index, outcome in zip(sent, answers, strict=True):
        integration = calls[index][0]
        enforce = integration.limit_requests_per_minute is not None
        if isinstance(outcome, outbound.OutboundError):
            record(integration.pk, integration.tenant_id, requests=1, errors=1, enforce_rate=enforce)
        else:
            tokens, cost = reported_usage(integration, outcome.headers)
            record(integration.pk, integration.tenant_id, requests=outcome.attempts,
                   errors=int(outcome.status_code >= 400), tokens=tokens, cost=cost, enforce_rate=enforce)
        outcomes[index] = outcome
    return outcomes
