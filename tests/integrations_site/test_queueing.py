"""Sending tasks by name: a failed send is tried once more, then given up on with a log line (the sweeps
queue the work again later)."""
from integrations_site import queueing


def test_a_send_that_fails_once_is_tried_again_and_goes_through(monkeypatch):
    calls = []

    def flaky(name, args, countdown):
        calls.append((name, args, countdown))
        if len(calls) == 1:
            raise OSError("broker restarting")

    monkeypatch.setattr(queueing, "_send", flaky)
    monkeypatch.setattr(queueing, "RETRY_PAUSE_SECONDS", 0)
    assert queueing.enqueue("connections.run_connection_check", "c-1", countdown=5) is True
    assert calls == [("connections.run_connection_check", ["c-1"], 5)] * 2


def test_a_broker_that_stays_down_is_given_up_on_with_a_log_line_naming_the_task(monkeypatch, caplog):
    def down(name, args, countdown):
        raise OSError("Connection refused")

    monkeypatch.setattr(queueing, "_send", down)
    monkeypatch.setattr(queueing, "RETRY_PAUSE_SECONDS", 0)
    with caplog.at_level("WARNING", logger="integrations_site.queueing"):
        assert queueing.enqueue("webhooks.process_webhook_events", ["e-1"], log_event="webhooks.handoff.failed",
                                log_detail="events=1") is False
    [line] = [r.getMessage() for r in caplog.records]
    assert line == "webhooks.handoff.failed task=webhooks.process_webhook_events events=1 error=OSError"
