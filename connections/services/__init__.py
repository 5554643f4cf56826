"""Connection services: the only place that changes connections' state or talks to the outside.

Split by concept: ``integrations`` (lifecycle, config versions), ``credentials``,
``probes`` (calling a test endpoint), ``health`` (the health state machine), ``checks``
(connection tests and recording outcomes), ``schedule`` (scheduled health checks),
``statuses`` (storing external statuses), ``polling``, ``oauth``, ``usage`` (counting
and limits), ``notifications`` (telling the tenant, through the notifications app) and
``queueing`` (the only place that hands work to the workers).
Views, admin actions and tasks call these.
"""
from .checks import (
    checks_prune,
    checks_record,
    connection_check_execute,
    connection_test_run,
    probe_with_refresh,
    queued_checks_sweep,
    system_provider_test,
)
from .credentials import credential_remove, credential_set, credential_update
from .health import check_interval, health_apply, next_check_time, next_health_state
from .integrations import (
    DELETE_HOOKS,
    config_version_record,
    config_version_restore,
    integration_create,
    integration_delete,
    integration_disable,
    integration_enable,
    integration_lock,
    integration_update,
)
from .oauth import (
    OAuthCallbackError,
    RefreshFailed,
    oauth_callback,
    oauth_disconnect,
    oauth_refresh,
    oauth_start,
    refresh_due,
    refresh_for_retry,
    validate_return_url,
)
from .polling import status_poll, status_polls_dispatch
from .probes import ProbeResult, endpoint_url, probe, probe_many
from .queueing import connection_retest_queue, connection_test_queue, status_poll_queue
from .schedule import due_for_check, health_checks_dispatch, health_checks_run
from .statuses import PollError, PollResult, extract_items, map_status, raw_to_canonical, statuses_store
from .usage import LimitRefused, metered_many, metered_request

__all__ = [
    "DELETE_HOOKS", "LimitRefused", "OAuthCallbackError", "PollError", "PollResult", "ProbeResult", "RefreshFailed",
    "check_interval", "checks_prune", "checks_record", "config_version_record", "config_version_restore",
    "connection_check_execute",
    "connection_retest_queue", "connection_test_queue", "connection_test_run", "credential_remove", "credential_set",
    "credential_update", "due_for_check", "endpoint_url", "extract_items", "health_apply", "health_checks_dispatch",
    "health_checks_run", "integration_create", "integration_delete", "integration_disable", "integration_enable",
    "integration_lock", "integration_update", "map_status", "metered_many", "metered_request", "next_check_time",
    "next_health_state", "oauth_callback", "oauth_disconnect", "oauth_refresh", "oauth_start", "probe", "probe_many",
    "probe_with_refresh", "queued_checks_sweep", "raw_to_canonical", "refresh_due", "refresh_for_retry",
    "status_poll", "status_poll_queue", "status_polls_dispatch", "statuses_store", "system_provider_test",
    "validate_return_url",
]
