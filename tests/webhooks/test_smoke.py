import hashlib
import hmac

from webhooks.models import WebhookEvent
from webhooks.services import event_process


def test_github_delivery_is_accepted_stored_deduped_and_processed(admin_client_api, integration, client):
    created = admin_client_api.post(
        "/api/v1/webhooks/", {"integration": str(integration.pk), "name": "gh", "signature_scheme": "github"},
        format="json",
    )
    assert created.status_code == 201, created.content
    secret, url = created.json()["secret"], created.json()["url"]
    body = b'{"action": "opened"}'
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"HTTP_X_HUB_SIGNATURE_256": sig, "HTTP_X_GITHUB_DELIVERY": "d-1"}
    first = client.post(url, body, content_type="application/json", **headers)
    assert first.status_code == 202, first.content
    again = client.post(url, body, content_type="application/json", **headers)
    assert again.status_code == 200 and again.json()["event_id"] == first.json()["event_id"]
    bad = client.post(url, b'{"action": "closed"}', content_type="application/json", **headers)
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "SIGNATURE_INVALID"
    event = WebhookEvent.objects.get()
    assert bytes(event.body) == body and event.dedupe_key == "sha256:" + hashlib.sha256(body).hexdigest()
    assert event_process(event_id=event.pk) == "processed"
    assert event_process(event_id=event.pk) is None
    detail = admin_client_api.get(f"/api/v1/webhook-events/{event.pk}/").json()
    assert detail["body"] == body.decode() and detail["status"] == "processed"
