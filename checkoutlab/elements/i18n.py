"""Label translations and money formatting for the rendered elements.

The catalogue is a plain dict so a missing label is visible in review and in the completeness
test, without a gettext build step. Money goes through Babel because currency exponents and
symbol placement differ per currency and locale (JPY has no minor unit, German puts the euro sign
after a decimal comma) and hand-rolled formatting gets those wrong.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Final

from babel import Locale
from babel.numbers import format_currency, format_decimal, get_currency_precision

LOCALES: Final[tuple[str, ...]] = ("en", "de", "fr", "es", "ja")
DEFAULT_LOCALE: Final[str] = "en"


def _same(text: str) -> dict[str, str]:
    """Brand names are not translated, but every locale still gets an explicit entry."""
    return dict.fromkeys(LOCALES, text)


MESSAGES: Final[dict[str, dict[str, str]]] = {
    # Payment method names
    "method.card": {"en": "Card", "de": "Karte", "fr": "Carte", "es": "Tarjeta", "ja": "カード"},
    "method.apple_pay": _same("Apple Pay"),
    "method.google_pay": _same("Google Pay"),
    "method.bank_transfer": {
        "en": "Bank transfer",
        "de": "Banküberweisung",
        "fr": "Virement bancaire",
        "es": "Transferencia bancaria",
        "ja": "銀行振込",
    },
    "method.sepa_debit": {
        "en": "SEPA Direct Debit",
        "de": "SEPA-Lastschrift",
        "fr": "Prélèvement SEPA",
        "es": "Adeudo directo SEPA",
        "ja": "SEPAダイレクトデビット",
    },
    "method.ideal": _same("iDEAL"),
    "method.klarna": _same("Klarna"),
    "payment_method": {
        "en": "Payment method",
        "de": "Zahlungsmethode",
        "fr": "Moyen de paiement",
        "es": "Método de pago",
        "ja": "お支払い方法",
    },
    "select.placeholder": {
        "en": "Select…",
        "de": "Bitte wählen…",
        "fr": "Sélectionner…",
        "es": "Seleccionar…",
        "ja": "選択してください",
    },
    # Card
    "card.number": {
        "en": "Card number",
        "de": "Kartennummer",
        "fr": "Numéro de carte",
        "es": "Número de tarjeta",
        "ja": "カード番号",
    },
    "card.exp": {
        "en": "Expiry",
        "de": "Ablaufdatum",
        "fr": "Date d'expiration",
        "es": "Caducidad",
        "ja": "有効期限",
    },
    "card.cvc": {
        "en": "CVC",
        "de": "Prüfnummer (CVC)",
        "fr": "Cryptogramme (CVC)",
        "es": "CVC",
        "ja": "セキュリティコード",
    },
    "card.holder": {
        "en": "Name on card",
        "de": "Name des Karteninhabers",
        "fr": "Nom du titulaire",
        "es": "Nombre del titular",
        "ja": "カード名義人",
    },
    # Wallets
    "wallet.pay_with": {
        "en": "Pay with {network}",
        "de": "Mit {network} bezahlen",
        "fr": "Payer avec {network}",
        "es": "Pagar con {network}",
        "ja": "{network}で支払う",
    },
    "wallet.hint": {
        "en": "Your device will ask you to confirm the payment.",
        "de": "Ihr Gerät fordert Sie auf, die Zahlung zu bestätigen.",
        "fr": "Votre appareil vous demandera de confirmer le paiement.",
        "es": "Su dispositivo le pedirá que confirme el pago.",
        "ja": "お使いのデバイスで支払いの確認を求められます。",
    },
    # Bank transfer
    "bank_transfer.instructions": {
        "en": "Transfer the exact amount to the account below and include the reference so we "
        "can match your payment.",
        "de": "Überweisen Sie den genauen Betrag auf das unten stehende Konto und geben Sie die "
        "Referenz an, damit wir Ihre Zahlung zuordnen können.",
        "fr": "Virez le montant exact sur le compte ci-dessous en indiquant la référence afin "
        "que nous puissions identifier votre paiement.",
        "es": "Transfiera el importe exacto a la cuenta indicada abajo e incluya la referencia "
        "para que podamos identificar su pago.",
        "ja": "下記の口座に正確な金額をお振り込みください。"
        "入金確認のため、参照番号を必ずご記入ください。",
    },
    "bank_transfer.sandbox": {
        "en": "Sandbox account: do not send real money.",
        "de": "Sandbox-Konto: Überweisen Sie kein echtes Geld.",
        "fr": "Compte de test : n'envoyez pas d'argent réel.",
        "es": "Cuenta de pruebas: no envíe dinero real.",
        "ja": "テスト用口座です。実際のお金を送金しないでください。",
    },
    "bank.amount": {"en": "Amount", "de": "Betrag", "fr": "Montant", "es": "Importe", "ja": "金額"},
    "bank.account_holder": {
        "en": "Account holder",
        "de": "Kontoinhaber",
        "fr": "Titulaire du compte",
        "es": "Titular de la cuenta",
        "ja": "口座名義",
    },
    "bank.iban": _same("IBAN"),
    "bank.bic": _same("BIC"),
    "bank.reference": {
        "en": "Reference",
        "de": "Verwendungszweck",
        "fr": "Référence",
        "es": "Referencia",
        "ja": "参照番号",
    },
    # SEPA Direct Debit
    "sepa.mandate": {
        "en": "By providing your IBAN and confirming this payment, you authorise {creditor} and "
        "its payment provider to send instructions to your bank to debit your account, and your "
        "bank to debit your account in accordance with those instructions. You are entitled to a "
        "refund from your bank under the terms and conditions of your agreement with your bank; "
        "a refund must be claimed within 8 weeks starting from the date on which your account "
        "was debited.",
        "de": "Mit der Angabe Ihrer IBAN und der Bestätigung dieser Zahlung ermächtigen Sie "
        "{creditor} und seinen Zahlungsdienstleister, Ihrer Bank Anweisungen zur Belastung Ihres "
        "Kontos zu erteilen, und Ihre Bank, Ihr Konto gemäß diesen Anweisungen zu belasten. Sie "
        "haben Anspruch auf Erstattung durch Ihre Bank gemäß den Bedingungen Ihres Vertrags mit "
        "Ihrer Bank; die Erstattung muss innerhalb von 8 Wochen ab dem Tag der Belastung Ihres "
        "Kontos verlangt werden.",
        "fr": "En fournissant votre IBAN et en confirmant ce paiement, vous autorisez {creditor} "
        "et son prestataire de paiement à envoyer des instructions à votre banque pour débiter "
        "votre compte, et votre banque à débiter votre compte conformément à ces instructions. "
        "Vous avez droit à un remboursement par votre banque selon les conditions de votre "
        "convention avec elle ; la demande de remboursement doit être présentée dans les 8 "
        "semaines suivant la date de débit de votre compte.",
        "es": "Al proporcionar su IBAN y confirmar este pago, autoriza a {creditor} y a su "
        "proveedor de pagos a enviar instrucciones a su banco para adeudar su cuenta, y a su "
        "banco a adeudar su cuenta de acuerdo con dichas instrucciones. Tiene derecho a un "
        "reembolso por parte de su banco según los términos y condiciones de su contrato con él; "
        "el reembolso debe solicitarse en un plazo de 8 semanas a partir de la fecha en que se "
        "adeudó su cuenta.",
        "ja": "IBANを入力してこの支払いを確定することにより、"
        "お客様は{creditor}およびその決済代行業者がお客様の銀行に口座引き落としの指示を"
        "送ること、ならびにお客様の銀行がその指示に従って口座から引き落とすことを承認します。"
        "お客様は銀行との契約条件に基づき、銀行から返金を受ける権利があります。"
        "返金の請求は、口座から引き落とされた日から8週間以内に行う必要があります。",
    },
    # iDEAL
    "ideal.bank": {"en": "Bank", "de": "Bank", "fr": "Banque", "es": "Banco", "ja": "銀行"},
    # Klarna
    "klarna.redirect": {
        "en": "You will be redirected to Klarna to complete your purchase.",
        "de": "Sie werden zu Klarna weitergeleitet, um Ihren Kauf abzuschließen.",
        "fr": "Vous serez redirigé vers Klarna pour finaliser votre achat.",
        "es": "Se le redirigirá a Klarna para completar su compra.",
        "ja": "購入を完了するためにKlarnaへ移動します。",
    },
    # Loyalty
    "loyalty.default_program": {
        "en": "Rewards",
        "de": "Prämien",
        "fr": "Récompenses",
        "es": "Recompensas",
        "ja": "リワード",
    },
    "loyalty.balance": {
        "en": "Balance: {points} points ({value})",
        "de": "Guthaben: {points} Punkte ({value})",
        "fr": "Solde : {points} points ({value})",
        "es": "Saldo: {points} puntos ({value})",
        "ja": "残高: {points}ポイント（{value}）",  # noqa: RUF001 - Japanese uses full-width brackets
    },
    "loyalty.redeem": {
        "en": "Use my points",
        "de": "Meine Punkte einlösen",
        "fr": "Utiliser mes points",
        "es": "Usar mis puntos",
        "ja": "ポイントを使う",
    },
    # Extra verification
    "verify.title": {
        "en": "Additional verification",
        "de": "Zusätzliche Überprüfung",
        "fr": "Vérification supplémentaire",
        "es": "Verificación adicional",
        "ja": "追加の確認",
    },
    "verify.cvv": {
        "en": "Re-enter CVC",
        "de": "CVC erneut eingeben",
        "fr": "Saisissez à nouveau le CVC",
        "es": "Vuelva a introducir el CVC",
        "ja": "CVCを再入力",
    },
    "billing.title": {
        "en": "Billing address",
        "de": "Rechnungsadresse",
        "fr": "Adresse de facturation",
        "es": "Dirección de facturación",
        "ja": "請求先住所",
    },
    "billing.line1": {
        "en": "Address line 1",
        "de": "Adresszeile 1",
        "fr": "Adresse (ligne 1)",
        "es": "Dirección (línea 1)",
        "ja": "住所1",
    },
    "billing.postal_code": {
        "en": "Postal code",
        "de": "Postleitzahl",
        "fr": "Code postal",
        "es": "Código postal",
        "ja": "郵便番号",
    },
    "billing.country": {"en": "Country", "de": "Land", "fr": "Pays", "es": "País", "ja": "国"},
    "biometric.title": {
        "en": "Confirm it's you",
        "de": "Bestätigen Sie Ihre Identität",
        "fr": "Confirmez votre identité",
        "es": "Confirme su identidad",
        "ja": "本人確認",
    },
    "biometric.body": {
        "en": "Use your device's fingerprint, face or screen lock to confirm this payment.",
        "de": "Bestätigen Sie diese Zahlung mit Fingerabdruck, Gesichtserkennung oder "
        "Bildschirmsperre Ihres Geräts.",
        "fr": "Utilisez l'empreinte digitale, la reconnaissance faciale ou le verrouillage "
        "d'écran de votre appareil pour confirmer ce paiement.",
        "es": "Use la huella, el reconocimiento facial o el bloqueo de pantalla de su "
        "dispositivo para confirmar este pago.",
        "ja": "デバイスの指紋認証、顔認証、または画面ロックでこの支払いを確認してください。",
    },
    "biometric.button": {
        "en": "Confirm with this device",
        "de": "Mit diesem Gerät bestätigen",
        "fr": "Confirmer avec cet appareil",
        "es": "Confirmar con este dispositivo",
        "ja": "このデバイスで確認",
    },
    # 3-D Secure
    "three_ds.title": {
        "en": "Confirm with your bank",
        "de": "Bei Ihrer Bank bestätigen",
        "fr": "Confirmez auprès de votre banque",
        "es": "Confirme con su banco",
        "ja": "カード発行会社での認証",
    },
    "three_ds.body": {
        "en": "Your bank asks you to confirm this payment.",
        "de": "Ihre Bank bittet Sie, diese Zahlung zu bestätigen.",
        "fr": "Votre banque vous demande de confirmer ce paiement.",
        "es": "Su banco le pide que confirme este pago.",
        "ja": "カード発行会社がこの支払いの確認を求めています。",
    },
    "three_ds.complete": {
        "en": "Complete authentication",
        "de": "Authentifizierung abschließen",
        "fr": "Terminer l'authentification",
        "es": "Completar la autenticación",
        "ja": "認証を完了",
    },
    "three_ds.fail": {
        "en": "Fail authentication",
        "de": "Authentifizierung ablehnen",
        "fr": "Faire échouer l'authentification",
        "es": "Rechazar la autenticación",
        "ja": "認証を失敗させる",
    },
    # Submit and amount
    "submit.pay": {
        "en": "Pay {amount}",
        "de": "Bezahlen {amount}",
        "fr": "Payer {amount}",
        "es": "Pagar {amount}",
        "ja": "支払う {amount}",
    },
    "presentment.approx": _same("≈ {amount}"),
    # Notices
    "out_of_stock.title": {
        "en": "Sorry, some items are out of stock",
        "de": "Leider sind einige Artikel nicht vorrätig",
        "fr": "Désolé, certains articles sont en rupture de stock",
        "es": "Lo sentimos, algunos artículos están agotados",
        "ja": "申し訳ありません。在庫切れの商品があります",
    },
    "out_of_stock.line": {
        "en": "{sku}: {requested} requested, {available} available",
        "de": "{sku}: {requested} angefragt, {available} verfügbar",
        "fr": "{sku} : {requested} demandé(s), {available} disponible(s)",
        "es": "{sku}: {requested} solicitados, {available} disponibles",
        "ja": "{sku}: 注文数 {requested}、在庫 {available}",
    },
    "out_of_stock.line_unknown": {
        "en": "{sku}: {requested} requested, not available",
        "de": "{sku}: {requested} angefragt, nicht verfügbar",
        "fr": "{sku} : {requested} demandé(s), indisponible",
        "es": "{sku}: {requested} solicitados, no disponible",
        "ja": "{sku}: 注文数 {requested}、在庫なし",
    },
    "out_of_stock.body": {
        "en": "No payment has been taken. Please update your cart.",
        "de": "Es wurde keine Zahlung vorgenommen. Bitte passen Sie Ihren Warenkorb an.",
        "fr": "Aucun paiement n'a été effectué. Veuillez modifier votre panier.",
        "es": "No se ha realizado ningún cargo. Actualice su carrito.",
        "ja": "お支払いは行われていません。カートを更新してください。",
    },
    "notice.no_methods": {
        "en": "No payment method is available for this purchase.",
        "de": "Für diesen Kauf ist keine Zahlungsmethode verfügbar.",
        "fr": "Aucun moyen de paiement n'est disponible pour cet achat.",
        "es": "No hay ningún método de pago disponible para esta compra.",
        "ja": "この購入に利用できるお支払い方法はありません。",
    },
}


def has_message(key: str) -> bool:
    """Lets config values be either a catalogue id or literal merchant text."""
    return key in MESSAGES


def translate(key: str, locale: str, **kwargs: object) -> str:
    """Look up a label, falling back to English so a gap never shows a bare message id.

    An unknown *key* raises ``KeyError``: that is a template bug and should fail the tests, not
    reach a shopper. Only catalogue strings are used as format templates; ``kwargs`` values are
    substituted verbatim, so untrusted text cannot inject format fields.
    """
    entry = MESSAGES[key]
    template = entry.get(locale) or entry[DEFAULT_LOCALE]
    return template.format(**kwargs)


def format_money(value_minor: int, currency: str, locale: str) -> str:
    """Format an amount kept in minor units, as sessions and profiles store it.

    The exponent comes from Babel's currency data (JPY 0, EUR 2, KWD 3) rather than a fixed
    division by 100; ``Decimal`` keeps the conversion exact.
    """
    amount = Decimal(value_minor).scaleb(-get_currency_precision(currency))
    return format_currency(amount, currency, locale=_locale(locale))


def format_number(value: int, locale: str) -> str:
    """Loyalty points need locale grouping too (1,200 vs 1.200)."""
    return format_decimal(value, locale=_locale(locale))


@lru_cache(maxsize=64)
def _locale(tag: str) -> Locale:
    """Babel parses a locale string on every call; a parsed ``Locale`` is reused as is."""
    return Locale.parse(tag)
