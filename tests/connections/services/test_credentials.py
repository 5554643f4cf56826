"""Credentials set, replaced and removed, called directly."""
from django.utils import timezone

from audit.models import AuditEvent
from connections import services
from connections.models import ConfigVersion, Credential
from tests.conftest import make_user


def test_credential_set_replaces_in_place_and_bumps_the_version(made, actor):
    first = services.credential_set(actor=actor, integration=made, credential_type="bearer",
                                    data={"token": "tok_first_0123456789"})
    Credential.objects.filter(pk=first.pk).update(last_validated_at=timezone.now(), status="error",
                                                   validation_error="401")
    second = services.credential_set(actor=actor, integration=made, credential_type="basic",
                                     data={"username": "u", "password": "pw_second_0123456789"})
    assert second.pk == first.pk and second.version == 2
    second.refresh_from_db()
    assert (second.type, second.status, second.validation_error) == ("basic", "active", "")
    assert second.last_validated_at is None
    assert second.payload == {"password": "pw_second_0123456789"}


def test_user_scoped_credential_set_makes_no_config_version(made, actor, tenant):
    user = make_user("member", tenant, "scoped-user")
    services.credential_set(actor=actor, integration=made, credential_type="bearer",
                            data={"token": "tok_mine_0123456789"}, user=user)
    assert ConfigVersion.objects.filter(integration=made).count() == 1


def test_credential_remove_returns_false_when_there_is_nothing(made, actor):
    assert services.credential_remove(actor=actor, integration=made) is False
    services.credential_set(
        actor=actor, integration=made, credential_type="bearer", data={"token": "tok_rm_0123456789"}
    )
    assert services.credential_remove(actor=actor, integration=made) is True
    assert services.credential_remove(actor=actor, integration=made) is False
    assert AuditEvent.objects.filter(action="credential.removed").count() == 1
    latest = ConfigVersion.objects.filter(integration=made).first()
    assert latest.reason == "credentials removed" and latest.credential_version is None
