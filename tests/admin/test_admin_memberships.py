"""Memberships changed by staff in the admin go through the services and are audited."""

from audit.models import AuditEvent
from tenants.models import Membership
from tests.tenants.factories import UserFactory


def test_membership_added_changed_and_removed_in_the_admin_is_audited(staff_client, tenant):
    alice = UserFactory(username="alice")
    added = staff_client.post(
        "/admin/tenants/membership/add/", {"user": alice.pk, "tenant": tenant.pk, "role": "member"}
    )
    assert added.status_code == 302, added.content
    membership = Membership.objects.get(user=alice, tenant=tenant)
    assert membership.role == "member"

    changed = staff_client.post(f"/admin/tenants/membership/{membership.pk}/change/", {"role": "tenant_admin"})
    assert changed.status_code == 302, changed.content
    assert Membership.objects.get(pk=membership.pk).role == "tenant_admin"

    removed = staff_client.post(f"/admin/tenants/membership/{membership.pk}/delete/", {"post": "yes"})
    assert removed.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()

    events = list(AuditEvent.objects.filter(action__startswith="membership.").order_by("created_at"))
    assert [(e.action, e.actor, e.tenant_id) for e in events] == [
        ("membership.created", "staff", tenant.pk),
        ("membership.role_changed", "staff", tenant.pk),
        ("membership.removed", "staff", tenant.pk),
    ]
    assert events[1].changes == {"role": {"from": "member", "to": "tenant_admin"}}
