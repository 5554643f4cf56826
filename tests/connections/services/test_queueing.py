"""Handing work to the workers: by task name, after commit, and never failing the caller."""


from audit.services import SYSTEM
from connections.models import ConnectionCheck
from connections.services import queueing


def test_connection_test_queue_hands_the_check_to_the_worker_after_commit(
    integration, sent_tasks, django_capture_on_commit_callbacks
):
    sent = sent_tasks[queueing.RUN_CONNECTION_CHECK]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        check = queueing.connection_test_queue(integration=integration, actor=SYSTEM)
    assert check.state == "queued" and not sent
    for callback in callbacks:
        callback()

    assert sent == [str(check.pk)]


def test_a_broker_failure_while_queueing_does_not_fail_the_caller(integration, sent_tasks,
                                                                  django_capture_on_commit_callbacks):
    sent_tasks.broker_down = True

    with django_capture_on_commit_callbacks(execute=True):
        check = queueing.connection_test_queue(integration=integration, actor=SYSTEM)

    assert ConnectionCheck.objects.get(pk=check.pk).state == "queued"  # the sweep picks it up later


def test_status_poll_queue_sends_the_integration_after_commit(integration, sent_tasks,
                                                              django_capture_on_commit_callbacks):
    sent = sent_tasks[queueing.RUN_STATUS_POLL]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        queueing.status_poll_queue(integration=integration)

    assert len(callbacks) == 1 and sent == [str(integration.pk)]
