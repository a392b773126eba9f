"""Domain errors that carry the public error shape.

Domains raise these; `checkoutlab.api.errors` turns them into
``{"error": {"type", "code", "message", "param"}}`` with the right status. Keeping the
shape here (not in `api/`) lets services, the CLI and tests share one vocabulary without
importing the web layer.
"""

from __future__ import annotations


class CheckoutLabError(Exception):
    status_code = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, code: str = "invalid_request", param: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param

    def to_dict(self) -> dict[str, object]:
        return {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
            }
        }


class InvalidRequest(CheckoutLabError):
    """The request is well-formed JSON but asks for something invalid."""


class AuthenticationError(CheckoutLabError):
    status_code = 401
    type = "authentication_error"


class PermissionDenied(CheckoutLabError):
    status_code = 403
    type = "permission_error"


class NotFound(CheckoutLabError):
    """Also used for other merchants' objects, so ids do not leak across merchants."""

    status_code = 404

    def __init__(self, message: str, *, code: str = "resource_missing", param: str | None = None):
        super().__init__(message, code=code, param=param)


class Conflict(CheckoutLabError):
    status_code = 409


class CardError(CheckoutLabError):
    """A payment the gateway refused: 402 like Stripe, with a decline code."""

    status_code = 402
    type = "card_error"
