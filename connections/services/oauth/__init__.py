"""OAuth2: connect flows (``connect``) and the tokens they leave behind (``tokens``)."""
from .connect import (
    OAuthCallbackError,
    callback_url,
    oauth_callback,
    oauth_disconnect,
    oauth_start,
    pkce_challenge,
    validate_return_url,
)
from .tokens import (
    RefreshFailed,
    TokenAnswer,
    due_for_refresh,
    oauth_refresh,
    refresh_claim,
    refresh_due,
    refresh_for_retry,
)

__all__ = [
    "OAuthCallbackError", "RefreshFailed", "TokenAnswer", "callback_url", "due_for_refresh", "oauth_callback",
    "oauth_disconnect", "oauth_refresh", "oauth_start", "pkce_challenge", "refresh_claim", "refresh_due",
    "refresh_for_retry", "validate_return_url",
]
