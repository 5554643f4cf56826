"""What a stream connects with: its URL and the request options of the integration's credential.

``StreamSetup.key_of`` is what restarts a held stream when it changes (the
URL, the TLS settings, the credential's version); the rest of the config
(mapping, item paths) is read afresh at every lease round without a restart.
"""
import json
from dataclasses import dataclass, field

from ... import adapters
from ...models import Credential, Integration
from ..oauth import refresh_for_retry
from ..probes import endpoint_url


@dataclass
class StreamSetup:
    integration: Integration
    credential: Credential | None
    url: str | None
    options: dict = field(repr=False)  # headers (secrets) and TLS material of outbound.streaming.stream_open
    key: tuple = ()

    @staticmethod
    def key_of(integration: Integration, credential: Credential | None) -> tuple:
        tls = json.dumps((integration.settings or {}).get("tls"), sort_keys=True, default=str) if isinstance(
            integration.settings, dict) else ""
        held = None if credential is None else (credential.pk, credential.version, credential.updated_at)
        return (integration.api_base_url, integration.stream_endpoint, integration.timeout_seconds, tls, held)

    @property
    def refreshable(self) -> bool:
        """Whether a 401 is worth one token refresh (OAuth2 with a refresh token)."""
        return self.credential is not None and self.credential.type == "oauth2"


def _setup(integration: Integration, credential: Credential | None) -> StreamSetup:
    return StreamSetup(
        integration=integration, credential=credential, url=endpoint_url(integration, integration.stream_endpoint),
        options=adapters.request_options(integration, credential), key=StreamSetup.key_of(integration, credential),
    )


def stream_setups(*, wanted: dict[str, tuple[Integration, Credential | None]]) -> dict[str, StreamSetup]:
    """A setup per integration (its credential decrypted: run off the event loop)."""
    return {pk: _setup(integration, credential) for pk, (integration, credential) in wanted.items()}


def setup_refreshed(*, setup: StreamSetup) -> StreamSetup | None:
    """After a 401: the setup with the OAuth2 credential refreshed once, or None when it cannot be."""
    fresh = refresh_for_retry(setup.credential)
    return None if fresh is None else _setup(setup.integration, fresh)
