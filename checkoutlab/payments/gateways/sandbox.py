"""A gateway that behaves like Stripe's test mode, without a network or an account.

The embedded default (tests, ``make demo``) needs every payment outcome on demand and
reproducibly, so the sandbox answers from Stripe's documented test cards: a merchant
or growth team that learnt "4000 0000 0000 0002 declines" on Stripe gets the same here,
and the PaymentMethod ids (``pm_card_visa``, ``pm_card_chargeDeclined``, ...) are Stripe's,
so tests written against the sandbox read the same as tests against Stripe test mode.

It keeps no state: each outcome is a function of the payment method id, the request and,
for references, a sha256 of the idempotency key. So any worker can answer any step of a
payment, and a retried charge gets the same reference, as with a real gateway's
idempotency.

Non-card methods are ``pm_sandbox_<method type>`` (``pm_sandbox_ideal``, ...); they
succeed, except ``bank_transfer``, which stays ``processing`` because the money arrives
later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Final

from checkoutlab.errors import CardError, InvalidRequest, NotFound
from checkoutlab.merchants.schemas import MethodType
from checkoutlab.payments.cards import PARAM_NUMBER, CardInput, validate_card
from checkoutlab.payments.gateways.base import (
    ActionOutcome,
    ChargeRequest,
    Gateway,
    GatewayResult,
    TokenizedCard,
)

__all__ = ["SANDBOX_TEST_CARDS", "SandboxGateway"]

SANDBOX_TEST_CARDS: Final[dict[str, tuple[str, str]]] = {
    # Succeed, one per brand (Stripe "Cards by brand").
    "4242424242424242": ("pm_card_visa", "Visa: succeeds"),
    "4000056655665556": ("pm_card_visa_debit", "Visa debit: succeeds"),
    "5555555555554444": ("pm_card_mastercard", "Mastercard: succeeds"),
    "2223003122003222": ("pm_card_mastercard", "Mastercard 2-series: succeeds"),
    "5200828282828210": ("pm_card_mastercard_debit", "Mastercard debit: succeeds"),
    "5105105105105100": ("pm_card_mastercard_prepaid", "Mastercard prepaid: succeeds"),
    "378282246310005": ("pm_card_amex", "American Express: succeeds"),
    "371449635398431": ("pm_card_amex", "American Express: succeeds"),
    "6011111111111117": ("pm_card_discover", "Discover: succeeds"),
    "3056930009020004": ("pm_card_diners", "Diners Club: succeeds"),
    "36227206271667": ("pm_card_diners", "Diners Club 14-digit: succeeds"),
    "3566002020360505": ("pm_card_jcb", "JCB: succeeds"),
    "6200000000000005": ("pm_card_unionpay", "UnionPay: succeeds"),
    # Declines (Stripe "Declined payments").
    "4000000000000002": ("pm_card_chargeDeclined", "Declined: card_declined"),
    "4000000000009995": (
        "pm_card_chargeDeclinedInsufficientFunds",
        "Declined: insufficient_funds",
    ),
    "4000000000009987": ("pm_card_chargeDeclinedLostCard", "Declined: lost_card"),
    "4000000000009979": ("pm_card_chargeDeclinedStolenCard", "Declined: stolen_card"),
    "4000000000000069": ("pm_card_chargeDeclinedExpiredCard", "Declined: expired_card"),
    "4000000000000127": ("pm_card_chargeDeclinedIncorrectCvc", "Declined: incorrect_cvc"),
    "4000000000000119": (
        "pm_card_chargeDeclinedProcessingError",
        "Fails: processing_error (retryable)",
    ),
    # 3-D Secure (Stripe "3D Secure authentication").
    "4000000000003220": (
        "pm_card_threeDSecure2Required",
        "3-D Secure 2 challenge required; succeeds once authenticated",
    ),
}
"""Test card number → (PaymentMethod id, what happens), for docs and the demo page.

Any other valid number of a known brand tokenizes to that brand's succeeding id.
"""


@dataclass(frozen=True, slots=True)
class _CardBehaviour:
    decline_code: str | None = None
    always_challenge: bool = False


# Each card payment method id → what the "issuer" does with it.
_CARD_BEHAVIOUR: Final[dict[str, _CardBehaviour]] = {
    "pm_card_visa": _CardBehaviour(),
    "pm_card_visa_debit": _CardBehaviour(),
    "pm_card_mastercard": _CardBehaviour(),
    "pm_card_mastercard_debit": _CardBehaviour(),
    "pm_card_mastercard_prepaid": _CardBehaviour(),
    "pm_card_amex": _CardBehaviour(),
    "pm_card_discover": _CardBehaviour(),
    "pm_card_diners": _CardBehaviour(),
    "pm_card_jcb": _CardBehaviour(),
    "pm_card_unionpay": _CardBehaviour(),
    "pm_card_chargeDeclined": _CardBehaviour("card_declined"),
    "pm_card_chargeDeclinedInsufficientFunds": _CardBehaviour("insufficient_funds"),
    "pm_card_chargeDeclinedLostCard": _CardBehaviour("lost_card"),
    "pm_card_chargeDeclinedStolenCard": _CardBehaviour("stolen_card"),
    "pm_card_chargeDeclinedExpiredCard": _CardBehaviour("expired_card"),
    "pm_card_chargeDeclinedIncorrectCvc": _CardBehaviour("incorrect_cvc"),
    "pm_card_chargeDeclinedProcessingError": _CardBehaviour("processing_error"),
    "pm_card_threeDSecure2Required": _CardBehaviour(always_challenge=True),
}

_SUCCESS_BY_BRAND: Final[dict[str, str]] = {
    "visa": "pm_card_visa",
    "mastercard": "pm_card_mastercard",
    "amex": "pm_card_amex",
    "discover": "pm_card_discover",
    "diners": "pm_card_diners",
    "jcb": "pm_card_jcb",
    "unionpay": "pm_card_unionpay",
}

_DECLINE_MESSAGES: Final[dict[str, str]] = {
    "card_declined": "Your card was declined. Try another card or payment method.",
    "insufficient_funds": ("Your card has insufficient funds. Try another card or payment method."),
    # Stripe advises not telling the shopper a card is reported lost or stolen.
    "lost_card": "Your card was declined. Try another card or payment method.",
    "stolen_card": "Your card was declined. Try another card or payment method.",
    "expired_card": "Your card has expired. Try another card.",
    "incorrect_cvc": "Your card's security code is incorrect. Check it and try again.",
    "processing_error": (
        "An error occurred while processing your card. Try again in a little bit."
    ),
    "authentication_failed": (
        "We couldn't verify this payment with your bank. Try again or use another payment method."
    ),
    "invalid_payment_method": (
        "This payment method can't be used. Enter your payment details again."
    ),
}

_RETRYABLE: Final = frozenset({"processing_error"})

_NON_CARD_PREFIX: Final = "pm_sandbox_"
# Settled later by the bank, so the payment is accepted but not yet paid.
_PROCESSING_METHODS: Final = frozenset({MethodType.bank_transfer.value})
_NON_CARD_METHODS: Final = frozenset(m.value for m in MethodType if m is not MethodType.card)


def _digest(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:24]


def _reference(idempotency_key: str) -> str:
    return f"pi_sandbox_{_digest('payment', idempotency_key)}"


def _failed(code: str, *, reference: str | None) -> GatewayResult:
    return GatewayResult(
        status="failed",
        reference=reference,
        decline_code=code,
        message=_DECLINE_MESSAGES[code],
        retryable=code in _RETRYABLE,
    )


def _authorize(behaviour: _CardBehaviour, reference: str) -> GatewayResult:
    if behaviour.decline_code is not None:
        return _failed(behaviour.decline_code, reference=reference)
    return GatewayResult(status="succeeded", reference=reference)


class SandboxGateway(Gateway):
    """Stripe-test-mode behaviour, deterministic and offline.

    Parameters
    ----------
    today
        Date used for the expiry check in :meth:`tokenize_card`; ``None`` means the local
        date. Injected by tests so that expiry outcomes do not depend on the calendar.

    Examples
    --------
    >>> from checkoutlab.payments.gateways.base import ChargeRequest
    >>> gateway = SandboxGateway()
    >>> result = gateway.charge(
    ...     ChargeRequest(
    ...         amount=1999,
    ...         currency="EUR",
    ...         payment_method="pm_card_chargeDeclinedInsufficientFunds",
    ...         idempotency_key="pay_1",
    ...     )
    ... )
    >>> result.status, result.decline_code
    ('failed', 'insufficient_funds')
    """

    name = "sandbox"
    server_side_methods = True

    def __init__(self, *, today: date | None = None) -> None:
        self.today = today

    def accepts_token(self, token: str) -> bool:
        """Stripe's test PaymentMethod ids (``pm_card_visa``, ...) and ``pm_sandbox_*``."""
        return token in _CARD_BEHAVIOUR or token.startswith(_NON_CARD_PREFIX)

    def tokenize_card(self, card: CardInput) -> TokenizedCard:
        """Validate the card, then swap the number for Stripe's test PaymentMethod id.

        Raises :class:`~checkoutlab.errors.CardError` for an invalid card, and with code
        ``card_not_supported`` for a valid number of a network the sandbox cannot route.
        """
        validate_card(card, today=self.today)
        known = SANDBOX_TEST_CARDS.get(card.number)
        payment_method = known[0] if known else _SUCCESS_BY_BRAND.get(card.brand)
        if payment_method is None:
            raise CardError(
                "This card network isn't supported. Use another card, "
                "for example the test card 4242 4242 4242 4242.",
                code="card_not_supported",
                param=PARAM_NUMBER,
            )
        return TokenizedCard(
            payment_method=payment_method,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )

    def charge(self, request: ChargeRequest) -> GatewayResult:
        """Answer as the test card's issuer would.

        A card that would authorize answers ``requires_action`` first when the profile
        demanded 3-D Secure (``three_ds_required``) or the card always asks for it. Cards
        that decline do so straight away: like Stripe's decline test cards, they are not
        enrolled in 3-D Secure. Wallets and bank methods ignore ``three_ds_required``;
        they authenticate the shopper their own way.
        """
        reference = _reference(request.idempotency_key)
        behaviour = _CARD_BEHAVIOUR.get(request.payment_method)
        if behaviour is not None:
            if self._needs_challenge(behaviour, request):
                return GatewayResult(
                    status="requires_action",
                    reference=reference,
                    next_action={
                        "type": "three_ds_challenge",
                        "challenge_id": f"tds_sandbox_{_digest('challenge', reference)}",
                    },
                )
            return _authorize(behaviour, reference)

        method = request.payment_method.removeprefix(_NON_CARD_PREFIX)
        if request.payment_method.startswith(_NON_CARD_PREFIX) and method in _NON_CARD_METHODS:
            status = "processing" if method in _PROCESSING_METHODS else "succeeded"
            return GatewayResult(status=status, reference=reference)

        # Nothing was created at the "gateway", so there is no reference to report.
        return _failed("invalid_payment_method", reference=None)

    def complete_action(
        self, *, reference: str, request: ChargeRequest, outcome: ActionOutcome
    ) -> GatewayResult:
        """Resolve a 3-D Secure challenge: authenticated cards then authorize as usual.

        Raises :class:`~checkoutlab.errors.InvalidRequest` for an ``outcome`` other than
        ``"succeeded"``/``"failed"`` or a charge that never asked for an action, and
        :class:`~checkoutlab.errors.NotFound` when ``reference`` is not the one this
        request's charge produced.
        """
        if outcome not in ("succeeded", "failed"):
            raise InvalidRequest(
                f"Unknown action outcome {outcome!r}. Use 'succeeded' or 'failed'.",
                code="invalid_outcome",
                param="outcome",
            )
        if reference != _reference(request.idempotency_key):
            raise NotFound(
                "No payment with this reference was created for this charge request. "
                "Pass the reference returned by charge() and the same request.",
                param="reference",
            )
        behaviour = _CARD_BEHAVIOUR.get(request.payment_method)
        if behaviour is None or not self._needs_challenge(behaviour, request):
            raise InvalidRequest(
                "This payment has no pending action to complete; "
                "only a charge that returned requires_action can be completed.",
                code="payment_intent_unexpected_state",
                param="reference",
            )
        if outcome == "failed":
            return _failed("authentication_failed", reference=reference)
        return _authorize(behaviour, reference)

    @staticmethod
    def _needs_challenge(behaviour: _CardBehaviour, request: ChargeRequest) -> bool:
        if behaviour.always_challenge:
            return True
        return request.three_ds_required and behaviour.decline_code is None
