"""An upstream's answer read as JSON, or the error that stands for it (one rule for polls, searches and
widget data)."""
from integrations_site import bounds, outbound


def answer_json(outcome, *, what: str = "answer") -> tuple[object, tuple[str, str] | None]:
    """(the JSON of ``outcome``, None), or (None, (code, message)) when there is none to read: the
    outbound error's own code, ``INVALID_CREDENTIALS`` for a 401/403, ``UNEXPECTED_STATUS`` for another
    status outside 2xx or a body that is not JSON (``what`` names it in the message)."""
    if isinstance(outcome, outbound.OutboundError):
        return None, (outcome.code, bounds.clean_text(outcome.message, 300))
    if outcome.status_code in (401, 403):
        return None, ("INVALID_CREDENTIALS", f"The API answered {outcome.status_code}: the credentials were refused.")
    if not 200 <= outcome.status_code < 300:
        return None, ("UNEXPECTED_STATUS", f"The API answered {outcome.status_code}.")
    try:
        return outcome.json(), None
    except ValueError:
        return None, ("UNEXPECTED_STATUS", f"The {what} is not JSON.")
