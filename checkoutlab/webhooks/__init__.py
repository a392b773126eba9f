"""Webhooks: provider notifications in (Stripe, Adyen), signed merchant events out.

- :mod:`~checkoutlab.webhooks.inbound` applies verified provider events to payments once;
- :mod:`~checkoutlab.webhooks.outbound` holds merchant endpoints and the event outbox;
- :mod:`~checkoutlab.webhooks.dispatcher` delivers the outbox with retries and backoff;
- :mod:`~checkoutlab.webhooks.signing` is the signature scheme, with the
  :func:`verify_signature` helper merchants use on their side.
"""

from checkoutlab.webhooks.signing import SignatureVerificationError, verify_signature

__all__ = ["SignatureVerificationError", "verify_signature"]
