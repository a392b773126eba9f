/*! Checkout Lab widget (see widget/README.md)
 *
 * One source file, two ways to load it:
 *
 *   <script src="/widget/checkoutlab.js"></script>          classic script: window.Checkoutlab
 *   import { orchestratePayment } from "/widget/checkoutlab.mjs";   ES module (re-exports this)
 *
 * This file is written so that it parses and behaves the same as a classic script and as an
 * ES module: everything lives in one strict-mode IIFE, there is no top-level `this`, no
 * `import`/`export`, and the only side effect is assigning `globalThis.Checkoutlab`.
 * `checkoutlab.mjs` imports it for that side effect and re-exports the functions by name, so
 * the logic exists exactly once.
 *
 * Content-Security-Policy: no eval / new Function / inline handlers / style attributes. Styles
 * go into a constructable stylesheet adopted by an open shadow root (not subject to
 * `style-src`), with a <style> fallback for browsers without adoptedStyleSheets; `appearance`
 * is applied as CSS custom properties through the CSSOM (`style.setProperty`).
 */
(function (global) {
  "use strict";

  if (global.Checkoutlab && typeof global.Checkoutlab.orchestratePayment === "function") {
    return; // loaded twice (script tag + module import): keep the first, like stripe-js does
  }

  const VERSION = "0.1.0";
  const DEFAULT_CONTAINER = "#payment-container";
  const DEFAULT_TIMEOUT_MS = 15000;
  const DEFAULT_MAX_ATTEMPTS = 4;
  const MAX_RETRY_AFTER_MS = 10000;
  const EVENT_FLUSH_MS = 3000;
  const EVENT_BATCH_MAX = 20;
  const WALLETS = ["apple_pay", "google_pay"];
  const SANDBOX_ASSERTION = "sandbox-simulated-assertion";
  const LOCALES = ["en", "de", "fr", "es", "ja"];

  // ------------------------------------------------------------------------------------------
  // Shopper-facing text. The server renders the form in the profile's locale; these are the
  // widget's own messages (validation, status), in the same five locales.
  // ------------------------------------------------------------------------------------------

  const MESSAGES = {
    en: {
      loading: "Loading payment options…",
      processing: "Processing your payment…",
      retrying: "Connection problem, retrying…",
      succeeded: "Payment successful. Thank you!",
      pending: "Thank you! Your payment is being processed and completes when the funds arrive.",
      requires_action: "Your bank asks you to confirm this payment.",
      declined: "Your payment was declined. Try another card or payment method.",
      network: "We couldn't reach the payment server. Check your connection and try again.",
      retry: "Try again",
      cancel: "Cancel",
      canceled: "Payment canceled.",
      unavailable: "This checkout can't be completed. Reload the page to start again.",
      expired: "This checkout has expired. Reload the page to start again.",
      already_paid: "This order has already been paid.",
      fix_fields: "Check the highlighted fields.",
      required: "This field is required.",
      number_required: "Enter your card number.",
      number_incomplete: "Your card number is incomplete.",
      number_invalid: "Your card number is invalid. Check the digits for typos.",
      exp_required: "Enter the expiry date (MM / YY).",
      exp_invalid: "The expiry date is invalid. Use MM / YY.",
      exp_past: "Your card's expiry date is in the past.",
      cvc_invalid: "Enter the {n}-digit security code.",
      cvv_mismatch: "This code doesn't match the security code above.",
      iban_invalid: "Enter a valid IBAN.",
      biometric_confirmed: "Confirmed.",
      biometric_required: "Confirm with biometrics to continue.",
      biometric_failed: "Biometric confirmation didn't complete. Try again.",
      biometric_unavailable: "Biometric confirmation isn't available on this device.",
      wallet_unavailable:
        "This wallet isn't available on this device. Choose another payment method.",
      card_details: "Card details",
      stripe_unavailable: "Card payments can't be loaded on this page. Reload the page or contact the shop.",
      stripe_failed: "We couldn't check your card details. Try again.",
    },
    de: {
      loading: "Zahlungsoptionen werden geladen…",
      processing: "Ihre Zahlung wird verarbeitet…",
      retrying: "Verbindungsproblem, neuer Versuch…",
      succeeded: "Zahlung erfolgreich. Vielen Dank!",
      pending:
        "Vielen Dank! Ihre Zahlung wird bearbeitet und ist abgeschlossen, sobald der Betrag eingeht.",
      requires_action: "Ihre Bank bittet Sie, diese Zahlung zu bestätigen.",
      declined:
        "Ihre Zahlung wurde abgelehnt. Versuchen Sie es mit einer anderen Karte oder Zahlungsmethode.",
      network:
        "Der Zahlungsserver ist nicht erreichbar. Prüfen Sie Ihre Verbindung und versuchen Sie es erneut.",
      retry: "Erneut versuchen",
      cancel: "Abbrechen",
      canceled: "Zahlung abgebrochen.",
      unavailable:
        "Dieser Bezahlvorgang kann nicht abgeschlossen werden. Laden Sie die Seite neu, um neu zu beginnen.",
      expired: "Dieser Bezahlvorgang ist abgelaufen. Laden Sie die Seite neu, um neu zu beginnen.",
      already_paid: "Diese Bestellung wurde bereits bezahlt.",
      fix_fields: "Bitte prüfen Sie die markierten Felder.",
      required: "Dieses Feld ist erforderlich.",
      number_required: "Geben Sie Ihre Kartennummer ein.",
      number_incomplete: "Ihre Kartennummer ist unvollständig.",
      number_invalid: "Ihre Kartennummer ist ungültig. Prüfen Sie die Ziffern auf Tippfehler.",
      exp_required: "Geben Sie das Ablaufdatum ein (MM / JJ).",
      exp_invalid: "Das Ablaufdatum ist ungültig. Verwenden Sie MM / JJ.",
      exp_past: "Das Ablaufdatum Ihrer Karte liegt in der Vergangenheit.",
      cvc_invalid: "Geben Sie die {n}-stellige Prüfnummer ein.",
      cvv_mismatch: "Dieser Code stimmt nicht mit der Prüfnummer oben überein.",
      iban_invalid: "Geben Sie eine gültige IBAN ein.",
      biometric_confirmed: "Bestätigt.",
      biometric_required: "Bestätigen Sie zum Fortfahren biometrisch.",
      biometric_failed:
        "Die biometrische Bestätigung wurde nicht abgeschlossen. Versuchen Sie es erneut.",
      biometric_unavailable: "Biometrische Bestätigung ist auf diesem Gerät nicht verfügbar.",
      wallet_unavailable:
        "Diese Wallet ist auf diesem Gerät nicht verfügbar. Wählen Sie eine andere Zahlungsmethode.",
      card_details: "Kartendaten",
      stripe_unavailable:
        "Kartenzahlungen können auf dieser Seite nicht geladen werden. Laden Sie die Seite neu oder wenden Sie sich an den Shop.",
      stripe_failed: "Ihre Kartendaten konnten nicht geprüft werden. Versuchen Sie es erneut.",
    },
    fr: {
      loading: "Chargement des moyens de paiement…",
      processing: "Traitement de votre paiement…",
      retrying: "Problème de connexion, nouvelle tentative…",
      succeeded: "Paiement réussi. Merci !",
      pending:
        "Merci ! Votre paiement est en cours de traitement et sera finalisé à réception des fonds.",
      requires_action: "Votre banque vous demande de confirmer ce paiement.",
      declined: "Votre paiement a été refusé. Essayez une autre carte ou un autre moyen de paiement.",
      network: "Impossible de joindre le serveur de paiement. Vérifiez votre connexion et réessayez.",
      retry: "Réessayer",
      cancel: "Annuler",
      canceled: "Paiement annulé.",
      unavailable: "Ce paiement ne peut pas être finalisé. Rechargez la page pour recommencer.",
      expired: "Cette session de paiement a expiré. Rechargez la page pour recommencer.",
      already_paid: "Cette commande a déjà été payée.",
      fix_fields: "Vérifiez les champs signalés.",
      required: "Ce champ est obligatoire.",
      number_required: "Saisissez votre numéro de carte.",
      number_incomplete: "Votre numéro de carte est incomplet.",
      number_invalid: "Votre numéro de carte n'est pas valide. Vérifiez les chiffres.",
      exp_required: "Saisissez la date d'expiration (MM / AA).",
      exp_invalid: "La date d'expiration n'est pas valide. Utilisez MM / AA.",
      exp_past: "La date d'expiration de votre carte est passée.",
      cvc_invalid: "Saisissez le cryptogramme à {n} chiffres.",
      cvv_mismatch: "Ce code ne correspond pas au cryptogramme saisi plus haut.",
      iban_invalid: "Saisissez un IBAN valide.",
      biometric_confirmed: "Confirmé.",
      biometric_required: "Confirmez par biométrie pour continuer.",
      biometric_failed: "La confirmation biométrique n'a pas abouti. Réessayez.",
      biometric_unavailable: "La confirmation biométrique n'est pas disponible sur cet appareil.",
      wallet_unavailable:
        "Ce portefeuille n'est pas disponible sur cet appareil. Choisissez un autre moyen de paiement.",
      card_details: "Informations de carte",
      stripe_unavailable:
        "Le paiement par carte ne peut pas être chargé sur cette page. Rechargez la page ou contactez la boutique.",
      stripe_failed: "Impossible de vérifier les informations de votre carte. Réessayez.",
    },
    es: {
      loading: "Cargando métodos de pago…",
      processing: "Procesando tu pago…",
      retrying: "Problema de conexión, reintentando…",
      succeeded: "Pago realizado. ¡Gracias!",
      pending: "¡Gracias! Tu pago se está procesando y se completará cuando recibamos los fondos.",
      requires_action: "Tu banco te pide que confirmes este pago.",
      declined: "Tu pago ha sido rechazado. Prueba con otra tarjeta u otro método de pago.",
      network:
        "No se ha podido conectar con el servidor de pagos. Comprueba tu conexión e inténtalo de nuevo.",
      retry: "Reintentar",
      cancel: "Cancelar",
      canceled: "Pago cancelado.",
      unavailable: "No se puede completar este pago. Vuelve a cargar la página para empezar de nuevo.",
      expired: "Esta sesión de pago ha caducado. Vuelve a cargar la página para empezar de nuevo.",
      already_paid: "Este pedido ya se ha pagado.",
      fix_fields: "Revisa los campos marcados.",
      required: "Este campo es obligatorio.",
      number_required: "Introduce el número de tu tarjeta.",
      number_incomplete: "El número de tu tarjeta está incompleto.",
      number_invalid: "El número de tu tarjeta no es válido. Revisa los dígitos.",
      exp_required: "Introduce la fecha de caducidad (MM / AA).",
      exp_invalid: "La fecha de caducidad no es válida. Usa MM / AA.",
      exp_past: "La fecha de caducidad de tu tarjeta ya ha pasado.",
      cvc_invalid: "Introduce el código de seguridad de {n} dígitos.",
      cvv_mismatch: "Este código no coincide con el código de seguridad anterior.",
      iban_invalid: "Introduce un IBAN válido.",
      biometric_confirmed: "Confirmado.",
      biometric_required: "Confirma con biometría para continuar.",
      biometric_failed: "La confirmación biométrica no se ha completado. Inténtalo de nuevo.",
      biometric_unavailable: "La confirmación biométrica no está disponible en este dispositivo.",
      wallet_unavailable:
        "Este monedero no está disponible en este dispositivo. Elige otro método de pago.",
      card_details: "Datos de la tarjeta",
      stripe_unavailable:
        "No se pueden cargar los pagos con tarjeta en esta página. Vuelve a cargar la página o contacta con la tienda.",
      stripe_failed: "No hemos podido comprobar los datos de tu tarjeta. Inténtalo de nuevo.",
    },
    ja: {
      loading: "お支払い方法を読み込んでいます…",
      processing: "お支払いを処理しています…",
      retrying: "接続に問題があります。再試行しています…",
      succeeded: "お支払いが完了しました。ありがとうございます。",
      pending: "ありがとうございます。お支払いは処理中で、入金の確認後に完了します。",
      requires_action: "カード発行会社がこのお支払いの確認を求めています。",
      declined: "お支払いが承認されませんでした。別のカードまたはお支払い方法をお試しください。",
      network: "決済サーバーに接続できませんでした。接続を確認して、もう一度お試しください。",
      retry: "再試行",
      cancel: "キャンセル",
      canceled: "お支払いはキャンセルされました。",
      unavailable: "この決済を完了できません。ページを再読み込みしてやり直してください。",
      expired: "この決済の有効期限が切れました。ページを再読み込みしてやり直してください。",
      already_paid: "この注文はすでにお支払い済みです。",
      fix_fields: "入力内容をご確認ください。",
      required: "この項目は必須です。",
      number_required: "カード番号を入力してください。",
      number_incomplete: "カード番号が不完全です。",
      number_invalid: "カード番号が正しくありません。数字をご確認ください。",
      exp_required: "有効期限を入力してください（MM / YY）。",
      exp_invalid: "有効期限が正しくありません。MM / YY の形式で入力してください。",
      exp_past: "カードの有効期限が過ぎています。",
      cvc_invalid: "{n}桁のセキュリティコードを入力してください。",
      cvv_mismatch: "上で入力したセキュリティコードと一致しません。",
      iban_invalid: "有効なIBANを入力してください。",
      biometric_confirmed: "確認しました。",
      biometric_required: "続行するには生体認証で確認してください。",
      biometric_failed: "生体認証による確認が完了しませんでした。もう一度お試しください。",
      biometric_unavailable: "このデバイスでは生体認証を利用できません。",
      wallet_unavailable:
        "このデバイスではこのウォレットを利用できません。別のお支払い方法を選択してください。",
      card_details: "カード情報",
      stripe_unavailable: "このページではカード決済を読み込めません。ページを再読み込みするか、ショップにお問い合わせください。",
      stripe_failed: "カード情報を確認できませんでした。もう一度お試しください。",
    },
  };

  /** Two-letter language of a BCP 47 tag if the widget speaks it, else "en". */
  function languageOf(tag) {
    const lang = String(tag || "")
      .toLowerCase()
      .split(/[-_]/)[0];
    return LOCALES.indexOf(lang) >= 0 ? lang : "en";
  }

  function translate(locale, key, vars) {
    const table = MESSAGES[languageOf(locale)];
    const text = table[key] != null ? table[key] : MESSAGES.en[key] != null ? MESSAGES.en[key] : key;
    return vars ? text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m)) : text;
  }

  // ------------------------------------------------------------------------------------------
  // Pure card logic. Mirrors checkoutlab/payments/cards.py so the shopper hears about a typo
  // before the round trip, in the same terms the server would use.
  // ------------------------------------------------------------------------------------------

  /** NFKC turns full-width digits (Japanese/Chinese IMEs) into ASCII ones. */
  function normalizeText(value) {
    const text = value == null ? "" : String(value);
    return typeof text.normalize === "function" ? text.normalize("NFKC") : text;
  }

  function digitsOnly(value) {
    return normalizeText(value).replace(/\D+/g, "");
  }

  function stripSeparators(value) {
    return normalizeText(value).replace(/[\s-]+/g, "");
  }

  /** Luhn checksum; spaces and dashes are ignored, any other non-digit makes it invalid. */
  function luhnValid(number) {
    const digits = stripSeparators(number);
    if (!/^\d+$/.test(digits)) return false;
    let total = 0;
    for (let i = 0; i < digits.length; i++) {
      let value = digits.charCodeAt(digits.length - 1 - i) - 48;
      if (i % 2 === 1) {
        value *= 2;
        if (value > 9) value -= 9;
      }
      total += value;
    }
    return total % 10 === 0;
  }

  /**
   * Brand from the issuer prefix (IIN), as the server's detect_brand: visa, mastercard (51-55
   * and the 2221-2720 "2-series"), amex, discover, unionpay, jcb, diners or unknown. Works on
   * partial numbers once the prefix is long enough to decide.
   */
  function detectBrand(number) {
    const digits = stripSeparators(number);
    if (!/^\d+$/.test(digits)) return "unknown";
    const prefix = (length) => (digits.length >= length ? Number(digits.slice(0, length)) : -1);
    const p2 = prefix(2);
    const p3 = prefix(3);
    const p4 = prefix(4);
    if (p2 === 34 || p2 === 37) return "amex";
    if (digits[0] === "4") return "visa";
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return "mastercard";
    if (p4 === 6011 || (p3 >= 644 && p3 <= 649) || p2 === 65) return "discover";
    if (p2 === 62 || p2 === 81) return "unionpay";
    if (p4 >= 3528 && p4 <= 3589) return "jcb";
    if ((p3 >= 300 && p3 <= 305) || p3 === 309 || p2 === 36 || p2 === 38 || p2 === 39) {
      return "diners";
    }
    return "unknown";
  }

  function range(from, to) {
    const out = [];
    for (let i = from; i <= to; i++) out.push(i);
    return out;
  }

  /** Allowed number lengths per brand (the server's _LENGTHS). */
  const BRAND_LENGTHS = Object.freeze({
    visa: [13, 16, 19],
    mastercard: [16],
    amex: [15],
    discover: range(16, 19),
    jcb: range(16, 19),
    diners: range(14, 19),
    unionpay: range(16, 19),
    unknown: range(12, 19),
  });

  function groupDigits(digits, sizes) {
    const parts = [];
    let index = 0;
    for (const size of sizes) {
      if (index >= digits.length) break;
      parts.push(digits.slice(index, index + size));
      index += size;
    }
    return parts.join(" ");
  }

  /** "4242424242424242" → "4242 4242 4242 4242"; Amex 4-6-5, 14-digit Diners 4-6-4; capped at
   *  the brand's longest number. */
  function formatCardNumber(value) {
    const all = digitsOnly(value);
    const brand = detectBrand(all);
    const digits = all.slice(0, Math.max.apply(null, BRAND_LENGTHS[brand]));
    if (brand === "amex") return groupDigits(digits, [4, 6, 5]);
    if (brand === "diners" && digits.length <= 14) return groupDigits(digits, [4, 6, 4]);
    return groupDigits(digits, [4, 4, 4, 4, 3]);
  }

  /** null when the number can be sent, else the message key of what is wrong. */
  function cardNumberError(number) {
    const digits = digitsOnly(number);
    if (!digits) return "number_required";
    const lengths = BRAND_LENGTHS[detectBrand(digits)];
    if (lengths.indexOf(digits.length) < 0) {
      return digits.length < Math.max.apply(null, lengths) ? "number_incomplete" : "number_invalid";
    }
    return luhnValid(digits) ? null : "number_invalid";
  }

  /**
   * Format what the shopper typed into "MM / YY". "4" becomes "04 / " (no month starts with
   * 4), "1/" becomes "01 / ", a pasted "12/2030" becomes "12 / 30". With `deleting` (the
   * shopper pressed backspace) the separator is not re-added, so it can be deleted.
   */
  function formatExpiry(value, options) {
    const deleting = !!(options && options.deleting);
    const raw = normalizeText(value);
    const full = raw.match(/^\s*(\d{1,2})\s*[/\-.]\s*(\d{4})\s*$/);
    let digits;
    if (full) {
      digits = full[1].padStart(2, "0") + full[2].slice(2);
    } else {
      digits = digitsOnly(raw);
      if (/^\s*\d\s*[/\-.]/.test(raw)) digits = "0" + digits;
    }
    if (digits.length === 1 && digits > "1") digits = "0" + digits;
    digits = digits.slice(0, 4);
    if (digits.length < 2) return digits;
    if (digits.length === 2) return deleting ? digits : digits + " / ";
    return digits.slice(0, 2) + " / " + digits.slice(2);
  }

  /** "MM / YY", "MM/YYYY", "MMYY" → {month, year (four digits)}; null if unreadable. */
  function parseExpiry(value) {
    const match = normalizeText(value)
      .trim()
      .match(/^(\d{1,2})\s*[/\-.]?\s*(\d{2}|\d{4})$/);
    if (!match) return null;
    const month = Number(match[1]);
    let year = Number(match[2]);
    if (month < 1 || month > 12) return null;
    if (year < 100) year += 2000;
    return { month: month, year: year };
  }

  /** null, or "exp_required" | "exp_invalid" | "exp_past". A card is valid through the last
   *  day of its expiry month; more than 20 years ahead is a typo (as on the server). */
  function expiryError(value, now) {
    if (!normalizeText(value).trim()) return "exp_required";
    const parsed = parseExpiry(value);
    if (!parsed) return "exp_invalid";
    const today = now || new Date();
    const year = today.getFullYear();
    if (parsed.year > year + 20) return "exp_invalid";
    if (parsed.year < year || (parsed.year === year && parsed.month < today.getMonth() + 1)) {
      return "exp_past";
    }
    return null;
  }

  /** Digits of the security code: 4 on the front of an Amex, 3 on the back of the others. */
  function cvcLength(brand) {
    return brand === "amex" ? 4 : 3;
  }

  function validateCvc(cvc, brand) {
    const text = normalizeText(cvc);
    return /^\d+$/.test(text) && text.length === cvcLength(brand);
  }

  /** IBAN check digits (ISO 13616 mod 97), spaces ignored. */
  function ibanValid(iban) {
    const text = normalizeText(iban).replace(/\s+/g, "").toUpperCase();
    if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(text)) return false;
    const rearranged = text.slice(4) + text.slice(0, 4);
    let remainder = 0;
    for (const char of rearranged) {
      const code = char.charCodeAt(0);
      const chunk = code >= 65 ? String(code - 55) : char;
      for (const digit of chunk) remainder = (remainder * 10 + Number(digit)) % 97;
    }
    return remainder === 1;
  }

  // ------------------------------------------------------------------------------------------
  // Retry policy
  // ------------------------------------------------------------------------------------------

  /**
   * Delay before the next attempt, after `attempt` attempts have failed (1, 2, ...):
   * exponential (base · 2^(attempt-1), capped at `max`) with "equal jitter", i.e. uniformly
   * in [cap/2, cap], so that many widgets recovering from one outage do not retry in step.
   */
  function backoffDelay(attempt, options) {
    const o = options || {};
    const base = o.base != null ? o.base : 500;
    const max = o.max != null ? o.max : 8000;
    const random = typeof o.random === "function" ? o.random : Math.random;
    const n = Number.isFinite(attempt) && attempt >= 1 ? Math.floor(attempt) : 1;
    const cap = Math.min(max, base * Math.pow(2, n - 1));
    const r = Math.min(1, Math.max(0, Number(random()) || 0));
    return Math.round(cap / 2 + (r * cap) / 2);
  }

  // 409s that mean "the same request is still running or was abandoned: ask again".
  const RETRYABLE_CONFLICTS = ["idempotency_request_in_progress", "idempotency_retry"];

  /**
   * Whether a failed attempt may be repeated, after `attempt` attempts (1 after the first).
   * Retried: network errors and timeouts, 408, 429, 5xx, and the 409s that say the same
   * Idempotency-Key is still in flight. Never retried: other 4xx (a 400 or a 402 decline
   * answers the same again) and requests the page canceled (AbortError).
   * `input` is an Error (from fetch or the API client) or a response-like {status, body?, code?}.
   */
  function shouldRetry(input, attempt, options) {
    const maxAttempts = (options && options.maxAttempts) || DEFAULT_MAX_ATTEMPTS;
    if (Number.isFinite(attempt) && attempt >= maxAttempts) return false;
    if (input == null) return false;
    if (input instanceof Error || (typeof input === "object" && "name" in input && !("status" in input))) {
      const name = input.name;
      if (name === "AbortError") return false;
      return name === "TypeError" || name === "NetworkError" || name === "TimeoutError";
    }
    const status = Number(input.status);
    if (!Number.isFinite(status) || status === 0) return true; // opaque network failure
    if (status === 408 || status === 429) return true;
    if (status === 409) {
      const code =
        input.code || (input.body && input.body.error && input.body.error.code) || null;
      return RETRYABLE_CONFLICTS.indexOf(code) >= 0;
    }
    return status >= 500 && status !== 501 && status !== 505;
  }

  // ------------------------------------------------------------------------------------------
  // Context
  // ------------------------------------------------------------------------------------------

  function isPlainObject(value) {
    if (value === null || typeof value !== "object") return false;
    const proto = Object.getPrototypeOf(value);
    return proto === Object.prototype || proto === null;
  }

  const UNSAFE_KEYS = ["__proto__", "constructor", "prototype"];

  /**
   * Deep-merge the detected context with the merchant's `userContext`: for every key the
   * merchant sets (not undefined) its value wins, nested objects merge key by key, arrays and
   * other values replace. Neither input is modified.
   */
  function mergeContext(detected, userContext) {
    const out = {};
    const layers = [detected, userContext];
    for (const layer of layers) {
      if (!isPlainObject(layer)) continue;
      for (const key of Object.keys(layer)) {
        if (UNSAFE_KEYS.indexOf(key) >= 0) continue;
        const value = layer[key];
        if (value === undefined) continue;
        if (isPlainObject(value)) {
          out[key] = mergeContext(isPlainObject(out[key]) ? out[key] : {}, value);
        } else if (Array.isArray(value)) {
          out[key] = value.slice();
        } else {
          out[key] = value;
        }
      }
    }
    return out;
  }

  function withTimeout(promise, ms, fallback) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(fallback), ms);
      Promise.resolve(promise).then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        () => {
          clearTimeout(timer);
          resolve(fallback);
        },
      );
    });
  }

  /**
   * What the browser can do, as the profile builder's context: platform biometric
   * authenticator (WebAuthn user verification), Apple Pay, Payment Request, device type and
   * OS from User-Agent Client Hints when the browser has them (the server falls back to the
   * User-Agent header), locale and time zone. Never throws.
   */
  async function detectCapabilities(env, options) {
    const g = env || global;
    const nav = g.navigator || {};
    const device = {
      biometric: false,
      apple_pay: false,
      google_pay: false,
      payment_request: typeof g.PaymentRequest === "function",
    };
    try {
      const hints = nav.userAgentData;
      if (hints) {
        if (hints.mobile === true) device.type = "mobile";
        if (hints.platform) device.os = String(hints.platform).toLowerCase().slice(0, 40);
      }
    } catch (err) {
      /* client hints are optional */
    }
    try {
      const PKC = g.PublicKeyCredential;
      if (PKC && typeof PKC.isUserVerifyingPlatformAuthenticatorAvailable === "function") {
        device.biometric =
          (await withTimeout(PKC.isUserVerifyingPlatformAuthenticatorAvailable(), 1500, false)) ===
          true;
      }
    } catch (err) {
      device.biometric = false;
    }
    try {
      const session = g.ApplePaySession;
      device.apple_pay = !!(session && session.canMakePayments && session.canMakePayments());
    } catch (err) {
      device.apple_pay = false; // throws outside secure contexts
    }
    const context = { device: device };
    const locale = (options && options.locale) || nav.language;
    if (locale) context.locale = String(locale).slice(0, 35);
    try {
      const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (zone) context.timezone = zone;
    } catch (err) {
      /* Intl without time zones */
    }
    return context;
  }

  // ------------------------------------------------------------------------------------------
  // Configuration (misuse is reported with what to fix)
  // ------------------------------------------------------------------------------------------

  function configError(message, Type) {
    const error = new (Type || Error)("Checkoutlab: " + message);
    error.code = "checkoutlab_misuse";
    return error;
  }

  const APPEARANCE_VARIABLES = {
    colorPrimary: "--cl-primary",
    primary: "--cl-primary",
    colorOnPrimary: "--cl-on-primary",
    colorBackground: "--cl-background",
    background: "--cl-background",
    colorText: "--cl-text",
    text: "--cl-text",
    colorDanger: "--cl-danger",
    danger: "--cl-danger",
    borderRadius: "--cl-radius",
    radius: "--cl-radius",
    fontFamily: "--cl-font",
    font: "--cl-font",
    spacingUnit: "--cl-gap",
    gap: "--cl-gap",
  };
  const LENGTH_VARIABLES = ["--cl-radius", "--cl-gap"];

  /**
   * `appearance` → [[custom property, value]]. Accepts Stripe-like names (colorPrimary,
   * borderRadius, ...), short names (primary, radius, ...), `--cl-*` names, and the same
   * inside `appearance.variables`. Numbers for lengths mean px.
   */
  function appearanceProperties(appearance) {
    if (appearance == null) return [];
    if (!isPlainObject(appearance)) {
      throw configError(
        "merchantConfig.appearance must be an object such as {colorPrimary: '#0a7cff', borderRadius: 8}.",
        TypeError,
      );
    }
    const source = isPlainObject(appearance.variables)
      ? Object.assign({}, appearance, appearance.variables)
      : appearance;
    const out = [];
    for (const key of Object.keys(source)) {
      if (key === "variables") continue;
      const property = key.indexOf("--cl-") === 0 ? key : APPEARANCE_VARIABLES[key];
      if (!property) {
        throw configError(
          "unknown appearance variable '" +
            key +
            "'. Use one of: " +
            Object.keys(APPEARANCE_VARIABLES).join(", ") +
            " (or a --cl-* custom property).",
        );
      }
      let value = source[key];
      if (typeof value === "number" && LENGTH_VARIABLES.indexOf(property) >= 0) value = value + "px";
      if (typeof value !== "string" && typeof value !== "number") {
        throw configError("appearance." + key + " must be a string or a number.", TypeError);
      }
      value = String(value).trim();
      if (!value || /[;{}<>\\]/.test(value) || value.length > 120) {
        throw configError("appearance." + key + " is not a valid CSS value: " + JSON.stringify(value));
      }
      out.push([property, value]);
    }
    const primary = out.filter((p) => p[0] === "--cl-primary").pop();
    if (primary && !out.some((p) => p[0] === "--cl-on-primary")) {
      const on = onColor(primary[1]);
      if (on) out.push(["--cl-on-primary", on]);
    }
    return out;
  }

  /** Black or white text on a #rrggbb colour, by WCAG relative luminance (as the server). */
  function onColor(hex) {
    const m = /^#([0-9a-f]{6})$/i.exec(String(hex).trim());
    if (!m) return null;
    const channels = [0, 2, 4].map((i) => parseInt(m[1].slice(i, i + 2), 16) / 255);
    const linear = channels.map((c) => (c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4)));
    const luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2];
    return luminance > 0.179 ? "#000000" : "#ffffff";
  }

  /**
   * `merchantConfig.stripe` → null (sandbox mode: the platform tokenizes the card) or
   * {publishableKey}: Stripe mode, where the card is collected by Stripe.js Elements and
   * the platform only ever receives a PaymentMethod id (PCI DSS SAQ-A).
   */
  function stripeOptions(stripe) {
    if (stripe == null || stripe === false) return null;
    if (!isPlainObject(stripe)) {
      throw configError(
        "merchantConfig.stripe must be an object such as {publishableKey: 'pk_test_...'} " +
          "(your Stripe publishable key), or omitted for the sandbox.",
        TypeError,
      );
    }
    for (const name of Object.keys(stripe)) {
      if (name !== "publishableKey") {
        throw configError("unknown merchantConfig.stripe option '" + name + "'. Use {publishableKey: 'pk_...'}.");
      }
    }
    const key = typeof stripe.publishableKey === "string" ? stripe.publishableKey.trim() : "";
    if (/^(sk|rk)_/.test(key)) {
      throw configError(
        "merchantConfig.stripe.publishableKey is a Stripe secret or restricted key. Never use it " +
          "in the browser: pass your Stripe publishable key (pk_...), and roll the exposed key " +
          "in the Stripe Dashboard.",
      );
    }
    if (!/^pk_[A-Za-z0-9_]+$/.test(key)) {
      throw configError(
        "merchantConfig.stripe.publishableKey must be your Stripe publishable key (pk_test_... " +
          "or pk_live_..., from the Stripe Dashboard).",
      );
    }
    return { publishableKey: key };
  }

  /**
   * Check `orchestratePayment`'s arguments and resolve the container. Throws an Error whose
   * message says what to fix. `env` defaults to the page (globalThis); tests pass a fake.
   */
  function validateConfig(merchantConfig, userContext, env) {
    const g = env || global;
    if (merchantConfig === null || typeof merchantConfig !== "object" || Array.isArray(merchantConfig)) {
      throw configError(
        "orchestratePayment(merchantConfig, userContext) needs merchantConfig as an object, e.g. " +
          "{publishableKey: 'pk_test_...', clientSecret: '<client_secret of the checkout session>'}.",
        TypeError,
      );
    }
    const key = merchantConfig.publishableKey;
    if (typeof key !== "string" || !key.trim()) {
      throw configError(
        "merchantConfig.publishableKey is missing. Pass your publishable key (pk_test_... or " +
          "pk_live_...); it is safe to use in the browser.",
      );
    }
    if (/^sk_/.test(key.trim())) {
      throw configError(
        "merchantConfig.publishableKey is a secret key (sk_...). Never use a secret key in the " +
          "browser: pass your publishable key (pk_...) instead, and roll this secret key because " +
          "it has been exposed to the page.",
      );
    }
    if (!/^pk_/.test(key.trim())) {
      throw configError(
        "merchantConfig.publishableKey must be a publishable key starting with 'pk_' (got '" +
          key.trim().slice(0, 8) +
          "…').",
      );
    }
    const secret = merchantConfig.clientSecret;
    if (typeof secret !== "string" || !secret.trim()) {
      throw configError(
        "merchantConfig.clientSecret is missing. Create a checkout session on your server " +
          "(POST /v1/checkout_sessions with your secret key) and pass its client_secret to the page.",
      );
    }
    if (/^sk_/.test(secret.trim())) {
      throw configError(
        "merchantConfig.clientSecret is a secret key (sk_...). Never use a secret key in the " +
          "browser: pass the checkout session's client_secret, and roll this secret key.",
      );
    }
    if (userContext != null && (typeof userContext !== "object" || Array.isArray(userContext))) {
      throw configError(
        "userContext must be a plain object such as {device: {type: 'mobile'}} (or omitted).",
        TypeError,
      );
    }
    if (merchantConfig.onStatus != null && typeof merchantConfig.onStatus !== "function") {
      throw configError("merchantConfig.onStatus must be a function (status) => {...}.", TypeError);
    }
    const apiBase = merchantConfig.apiBase == null ? "" : merchantConfig.apiBase;
    if (typeof apiBase !== "string" || (apiBase && !/^(https?:\/\/[^\s]+|\/[^\s]*)$/.test(apiBase))) {
      throw configError(
        "merchantConfig.apiBase must be '' (same origin), a path such as '/payments' or an " +
          "http(s) URL such as 'https://api.example.com'.",
      );
    }
    if (merchantConfig.locale != null && typeof merchantConfig.locale !== "string") {
      throw configError("merchantConfig.locale must be a language tag such as 'de' or 'fr-FR'.", TypeError);
    }
    const signal = merchantConfig.signal;
    if (signal != null && typeof signal.addEventListener !== "function") {
      throw configError("merchantConfig.signal must be an AbortSignal.", TypeError);
    }
    const appearance = appearanceProperties(merchantConfig.appearance);
    const stripe = stripeOptions(merchantConfig.stripe);

    const doc = g.document;
    if (!doc || typeof doc.querySelector !== "function") {
      throw configError("orchestratePayment must run in a browser page (no document found).");
    }
    const target = merchantConfig.container == null ? DEFAULT_CONTAINER : merchantConfig.container;
    let container = null;
    if (typeof target === "string") {
      try {
        container = doc.querySelector(target);
      } catch (err) {
        throw configError("merchantConfig.container '" + target + "' is not a valid CSS selector.");
      }
      if (!container) {
        const hint =
          target === DEFAULT_CONTAINER
            ? "Add <div id=\"payment-container\"></div> to the page before calling " +
              "orchestratePayment, or pass merchantConfig.container (an element or a CSS selector)."
            : "Check the selector, and call orchestratePayment after the element exists " +
              "(e.g. on DOMContentLoaded).";
        throw configError("container '" + target + "' was not found in the page. " + hint);
      }
    } else if (target && typeof target === "object" && target.nodeType === 1) {
      container = target;
    } else {
      throw configError(
        "merchantConfig.container must be an element or a CSS selector string (default '" +
          DEFAULT_CONTAINER +
          "').",
        TypeError,
      );
    }
    return {
      publishableKey: key.trim(),
      clientSecret: secret.trim(),
      container: container,
      apiBase: apiBase.replace(/\/+$/, ""),
      locale: merchantConfig.locale || null,
      appearance: appearance,
      onStatus: merchantConfig.onStatus || null,
      signal: signal || null,
      cancelButton: merchantConfig.cancelButton !== false,
      nonce: typeof merchantConfig.nonce === "string" ? merchantConfig.nonce : null,
      timeoutMs:
        Number.isFinite(merchantConfig.timeoutMs) && merchantConfig.timeoutMs > 0
          ? merchantConfig.timeoutMs
          : DEFAULT_TIMEOUT_MS,
      sandbox: /^pk_test_/.test(key.trim()),
      stripe: stripe,
    };
  }

  // ------------------------------------------------------------------------------------------
  // HTTP client: timeouts, retries with backoff, one error shape
  // ------------------------------------------------------------------------------------------

  function namedError(name, message, cause) {
    const error = new Error(message);
    error.name = name;
    if (cause) error.cause = cause;
    return error;
  }

  function defaultSleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal && signal.aborted) {
        reject(namedError("AbortError", "Checkoutlab: canceled"));
        return;
      }
      const timer = setTimeout(done, ms);
      function done() {
        if (signal) signal.removeEventListener("abort", onAbort);
        resolve();
      }
      function onAbort() {
        clearTimeout(timer);
        reject(namedError("AbortError", "Checkoutlab: canceled"));
      }
      if (signal) signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  function retryAfterMs(headers) {
    try {
      const value = headers && typeof headers.get === "function" ? headers.get("Retry-After") : null;
      if (!value) return 0;
      if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
      const date = Date.parse(value);
      return Number.isFinite(date) ? Math.max(0, date - Date.now()) : 0;
    } catch (err) {
      return 0;
    }
  }

  const REQUEST_ID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;
  const PAN_LIKE = /\d(?:-?\d){11}/; // as checkoutlab.payments.cards' redaction sees digits

  /**
   * One id per checkout, sent as `X-Request-Id` on every API call of that checkout (and as
   * `request_id` in its events) so one checkout can be followed across API, learner and
   * gateway logs: crypto.randomUUID() when available, else 32 hex digits from
   * crypto.getRandomValues. Always at most 64 characters of [A-Za-z0-9-]; null (no header)
   * in a browser without Web Crypto, where tracing must not stop the payment.
   */
  function newRequestId(env) {
    const c = (env || global).crypto;
    const draw = () => {
      if (c && typeof c.randomUUID === "function") return c.randomUUID();
      if (c && typeof c.getRandomValues === "function") {
        return Array.from(c.getRandomValues(new Uint8Array(16)), (x) => x.toString(16).padStart(2, "0")).join("");
      }
      return null;
    };
    try {
      // Redraw an id with 12+ digits in a row (dashes allowed): log and event redaction takes
      // such a run for a card number and would cut the trail this id is for.
      for (let i = 0; i < 20; i++) {
        const id = draw();
        if (!id || !PAN_LIKE.test(id)) return id;
      }
    } catch (err) {
      /* insecure context without randomUUID, or a broken polyfill */
    }
    return null;
  }

  /**
   * A small JSON client for the browser routes. `request(path, body, {idempotencyKey, retry,
   * keepalive, signal})` resolves to {ok, status, body} for every HTTP answer (after retrying
   * the retryable ones) and rejects only with NetworkError / TimeoutError / AbortError once
   * retries are exhausted. Each attempt has its own timeout (AbortController); a retry of a
   * confirm reuses the caller's Idempotency-Key, so the server answers it from its record
   * instead of charging twice. With `requestId` every request carries `X-Request-Id`.
   */
  function createApiClient(options) {
    const o = options || {};
    const base = String(o.apiBase || "").replace(/\/+$/, "");
    const requestId = typeof o.requestId === "string" && REQUEST_ID_PATTERN.test(o.requestId) ? o.requestId : null;
    const timeoutMs = o.timeoutMs || DEFAULT_TIMEOUT_MS;
    const maxAttempts = o.maxAttempts || DEFAULT_MAX_ATTEMPTS;
    const sleep = o.sleep || defaultSleep;
    const random = o.random || Math.random;

    function fetchImpl() {
      const f = o.fetch || global.fetch;
      if (typeof f !== "function") throw namedError("NetworkError", "Checkoutlab: fetch is not available");
      return f.apply(o.fetch ? undefined : global, arguments);
    }

    async function once(path, body, opts) {
      const controller = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeoutMs);
      const parent = opts.signal;
      const onAbort = () => controller.abort();
      if (parent) {
        if (parent.aborted) controller.abort();
        else parent.addEventListener("abort", onAbort, { once: true });
      }
      const headers = {
        Authorization: "Bearer " + o.publishableKey,
        "Content-Type": "application/json",
        Accept: "application/json",
      };
      if (opts.idempotencyKey) headers["Idempotency-Key"] = opts.idempotencyKey;
      if (requestId) headers["X-Request-Id"] = requestId;
      const fail = (err) => {
        if (parent && parent.aborted) return namedError("AbortError", "Checkoutlab: request canceled", err);
        if (timedOut) {
          return namedError(
            "TimeoutError",
            "Checkoutlab: " + path + " did not answer within " + Math.round(timeoutMs / 1000) + " s",
            err,
          );
        }
        return namedError("NetworkError", "Checkoutlab: could not reach " + (base || "the API") + path, err);
      };
      try {
        let response;
        let text;
        try {
          response = await fetchImpl(base + path, {
            method: "POST",
            headers: headers,
            body: JSON.stringify(body),
            signal: controller.signal,
            keepalive: !!opts.keepalive,
            credentials: "omit",
            cache: "no-store",
          });
          text = await response.text();
        } catch (err) {
          throw fail(err);
        }
        let json = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch (err) {
          json = null;
        }
        let status = response.status;
        if (json === null || typeof json !== "object") {
          json = {
            error: {
              type: "api_error",
              code: "invalid_response",
              message: "Unexpected answer (HTTP " + status + ") from " + path,
              param: null,
            },
          };
          if (status < 400) status = 502; // a proxy's HTML page is not an answer
        }
        return {
          ok: status >= 200 && status < 300,
          status: status,
          body: json,
          retryAfter: retryAfterMs(response.headers),
        };
      } finally {
        clearTimeout(timer);
        if (parent) parent.removeEventListener("abort", onAbort);
      }
    }

    async function request(path, body, requestOptions) {
      const opts = requestOptions || {};
      const retry = opts.retry !== false;
      for (let attempt = 1; ; attempt++) {
        let result;
        try {
          result = await once(path, body, opts);
        } catch (err) {
          if (!retry || !shouldRetry(err, attempt, { maxAttempts: maxAttempts })) throw err;
          if (o.onRetry) o.onRetry({ attempt: attempt, error: err, path: path });
          await sleep(backoffDelay(attempt, { random: random }), opts.signal);
          continue;
        }
        if (result.ok || !retry || !shouldRetry(result, attempt, { maxAttempts: maxAttempts })) {
          return result;
        }
        if (result.retryAfter > MAX_RETRY_AFTER_MS) return result; // show it, don't hang on it
        if (o.onRetry) o.onRetry({ attempt: attempt, status: result.status, path: path });
        await sleep(Math.max(backoffDelay(attempt, { random: random }), result.retryAfter), opts.signal);
      }
    }

    return { request: request, requestId: requestId };
  }

  // ------------------------------------------------------------------------------------------
  // Helpers shared by the form logic
  // ------------------------------------------------------------------------------------------

  function randomId() {
    const c = global.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    if (c && typeof c.getRandomValues === "function") {
      const b = c.getRandomValues(new Uint8Array(16));
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
      return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
    }
    throw new Error("Checkoutlab: this browser has no crypto.getRandomValues");
  }

  function base64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return global.btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // Server `param` → the form field whose error slot shows it.
  const PARAM_FIELDS = {
    "payment_method.card": "card_number",
    "payment_method.card.number": "card_number",
    "payment_method.card.exp_month": "exp",
    "payment_method.card.exp_year": "exp",
    "payment_method.card.cvc": "cvc",
    "payment_method.token": "stripe_card",
    "verification.cvv": "cvv_recheck",
    "verification.billing_address": "billing_line1",
    "verification.billing_address.line1": "billing_line1",
    "verification.billing_address.postal_code": "billing_postal_code",
    "verification.billing_address.country": "billing_country",
    "verification.biometric_assertion": "biometric",
    redeem_points: "redeem_points",
  };

  // Card error codes the widget has its own (translated) words for.
  const CODE_MESSAGES = {
    incorrect_number: "number_invalid",
    invalid_number: "number_invalid",
    invalid_expiry_month: "exp_invalid",
    invalid_expiry_year: "exp_invalid",
    expired_card: "exp_past",
    invalid_cvc: "cvc_invalid",
    verification_required: "required",
  };

  // Errors after which this checkout session cannot be paid from this page.
  const TERMINAL_CODES = {
    session_expired: "expired",
    profile_token_expired: "expired",
    session_already_succeeded: "already_paid",
    profile_stale: "unavailable",
    profile_token_invalid: "unavailable",
    profile_token_mismatch: "unavailable",
    invalid_client_secret: "unavailable",
    resource_missing: "unavailable",
    out_of_stock: "unavailable",
  };

  /**
   * Where and how to show an API error: {field, key?, message, terminal}. `field` is the
   * form field of the server's `param` ("form" if none); `key` a widget message key when the
   * widget has its own (translated) words for the code; `terminal` when the session cannot be
   * paid any more (expired, already paid, token refused).
   */
  function describeApiError(error) {
    const e = error || {};
    const code = e.code || "";
    const terminal = TERMINAL_CODES[code] || null;
    let field = (e.param && PARAM_FIELDS[e.param]) || null;
    if (!field && e.param && e.param.indexOf("verification.billing_address") === 0) field = "billing_line1";
    let key = CODE_MESSAGES[code] || null;
    if (code === "verification_required" && field === "biometric") key = "biometric_required";
    return {
      field: field || "form",
      key: terminal || key,
      message: e.message || "",
      code: code,
      terminal: !!terminal,
    };
  }

  /**
   * Validate the values read from the form for `method` and build the confirm request's
   * payment_method / verification / redeem_points. Pure: `values` is a plain object keyed by
   * input name (card_number, exp, cvc, cvv_recheck, billing_line1, billing_postal_code,
   * billing_country, ideal_bank, iban, account_holder, redeem_points). Returns
   * {errors: {field: {key, vars?}}, payment} where `payment` is null when there are errors.
   * With `stripe: true` a card payment is {type: "card"} without card fields: the caller adds
   * the Stripe PaymentMethod id as `token`.
   */
  function buildPayment(values, options) {
    const v = values || {};
    const o = options || {};
    const method = o.method;
    const verification = o.verification || {};
    const errors = {};
    const text = (name) => normalizeText(v[name]).trim();
    const payment = { payment_method: { type: method }, verification: {}, redeem_points: !!v.redeem_points };

    if (method === "card" && o.stripe) {
      // Stripe mode: the card is in Stripe's Element (validated there) and reaches the
      // platform only as a PaymentMethod id, added by the caller; the CVC cannot be re-entered.
    } else if (method === "card") {
      const number = digitsOnly(v.card_number);
      const brand = detectBrand(number);
      const numberKey = cardNumberError(number);
      if (numberKey) errors.card_number = { key: numberKey };
      const expKey = expiryError(v.exp, o.now);
      if (expKey) errors.exp = { key: expKey };
      const cvc = text("cvc");
      if (!validateCvc(cvc, brand)) errors.cvc = { key: "cvc_invalid", vars: { n: cvcLength(brand) } };
      if (verification.cvv) {
        const again = text("cvv_recheck");
        if (!validateCvc(again, brand)) {
          errors.cvv_recheck = { key: "cvc_invalid", vars: { n: cvcLength(brand) } };
        } else if (!errors.cvc && again !== cvc) {
          errors.cvv_recheck = { key: "cvv_mismatch" };
        } else {
          payment.verification.cvv = again;
        }
      }
      const exp = parseExpiry(v.exp);
      if (!numberKey && !expKey && !errors.cvc && exp) {
        payment.payment_method.card = {
          number: number,
          exp_month: exp.month,
          exp_year: exp.year,
          cvc: cvc,
        };
      }
    } else if (method === "ideal") {
      if (!text("ideal_bank")) errors.ideal_bank = { key: "required" };
    } else if (method === "sepa_debit") {
      if (!ibanValid(v.iban)) errors.iban = { key: text("iban") ? "iban_invalid" : "required" };
      if (!text("account_holder")) errors.account_holder = { key: "required" };
    }
    if (verification.avs) {
      const address = {
        line1: text("billing_line1"),
        postal_code: text("billing_postal_code"),
        country: text("billing_country").toUpperCase(),
      };
      if (!address.line1) errors.billing_line1 = { key: "required" };
      if (!address.postal_code) errors.billing_postal_code = { key: "required" };
      if (!/^[A-Z]{2}$/.test(address.country)) errors.billing_country = { key: "required" };
      payment.verification.billing_address = address;
    }
    return { errors: errors, payment: Object.keys(errors).length ? null : payment };
  }

  /** The events the widget reports never carry what the shopper typed: only these keys. */
  const EVENT_PROPERTY_KEYS = [
    "action", "method", "position", "field", "network", "outcome", "layout", "locale",
    "methods", "verification", "experiment", "variant", "policy", "stage", "reason",
    "elapsed_ms", "status", "code", "widget_version", "simulated",
  ];

  function eventProperties(properties) {
    const out = {};
    for (const key of EVENT_PROPERTY_KEYS) {
      if (properties && properties[key] !== undefined) out[key] = properties[key];
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // Events: exposure, interactions (batched), abandon; fetch keepalive, quiet on failure
  // ------------------------------------------------------------------------------------------

  function createEventReporter(api, ids) {
    let queue = [];
    let timer = null;

    function flush() {
      if (timer) {
        clearTimeout(timer);
        timer = null;
      }
      if (!queue.length) return;
      const events = queue.splice(0, queue.length);
      // Fire and forget: analytics must never break or slow down a payment.
      api.request("/v1/events", { events: events }, { keepalive: true, retry: false }).catch(() => {});
    }

    function track(type, properties) {
      if (!ids.session_id) return;
      queue.push({
        type: type,
        session_id: ids.session_id,
        decision_id: ids.decision_id,
        occurred_at: new Date().toISOString(),
        properties: Object.assign(
          api.requestId ? { widget_version: VERSION, request_id: api.requestId } : { widget_version: VERSION },
          eventProperties(properties),
        ),
      });
      if (type !== "interaction" || queue.length >= EVENT_BATCH_MAX) flush();
      else if (!timer) timer = setTimeout(flush, EVENT_FLUSH_MS);
    }

    return { track: track, flush: flush };
  }

  // ------------------------------------------------------------------------------------------
  // Styles and mounting
  // ------------------------------------------------------------------------------------------

  // The widget's own rules (the server sends the form's). Inherited properties are reset on
  // .cl-root so the merchant's `body { letter-spacing: ... }` does not reach into the form.
  const WIDGET_CSS = [
    ":host { display: block; }",
    ".cl-root { --cl-primary: #635bff; --cl-on-primary: #ffffff; --cl-background: #ffffff;",
    "  --cl-text: #1a1f36; --cl-danger: #c0123c; --cl-radius: 6px; --cl-gap: 12px;",
    "  --cl-font: system-ui, sans-serif; font-family: var(--cl-font); font-size: 16px;",
    "  font-style: normal; font-weight: 400; line-height: 1.4; letter-spacing: normal;",
    "  word-spacing: normal; text-align: start; text-indent: 0; text-transform: none;",
    "  text-shadow: none; white-space: normal; visibility: visible; cursor: auto;",
    "  color: var(--cl-text); background-color: var(--cl-background); }",
    ".cl-root [hidden] { display: none !important; }",
    ".cl-root .cl-widget-footer { display: grid; gap: 8px; margin-top: var(--cl-gap); }",
    ".cl-root .cl-status { margin: 0; display: grid; gap: 8px; }",
    ".cl-root .cl-status p { margin: 0; }",
    ".cl-root .cl-status[data-state=\"declined\"], .cl-root .cl-status[data-state=\"error\"],",
    "  .cl-root .cl-status[data-state=\"failed\"] { color: var(--cl-danger); }",
    ".cl-root .cl-status[data-state=\"succeeded\"] { font-weight: 600; }",
    ".cl-root .cl-status-actions { display: flex; gap: 8px; flex-wrap: wrap; }",
    ".cl-root .cl-link-button { justify-self: center; font: inherit; font-size: 0.875em;",
    "  color: inherit; background: none; border: 0; padding: 4px; text-decoration: underline;",
    "  cursor: pointer; }",
    ".cl-root .cl-link-button:focus-visible, .cl-root .cl-retry:focus-visible {",
    "  outline: 2px solid var(--cl-primary); outline-offset: 2px; }",
    ".cl-root .cl-retry { font: inherit; cursor: pointer; padding: 8px 12px;",
    "  border-radius: var(--cl-radius); border: 1px solid var(--cl-primary);",
    "  color: var(--cl-on-primary); background-color: var(--cl-primary); }",
    ".cl-root .cl-submit[aria-busy=\"true\"] { cursor: progress; }",
    // Stripe mode: the card Element's light-DOM mount point (slotted, or in place without
    // Shadow DOM), framed like the form's inputs.
    "::slotted([slot=\"checkoutlab-stripe-card\"]), .cl-root .cl-stripe-card { display: block;",
    "  padding: 12px; border: 1px solid var(--cl-border, #c4c9d4); border-radius: var(--cl-radius);",
    "  background-color: var(--cl-background); }",
    "::slotted(.StripeElement--focus), .cl-root .cl-stripe-card.StripeElement--focus {",
    "  outline: 2px solid var(--cl-primary); outline-offset: 1px; }",
    "::slotted(.StripeElement--invalid), .cl-root .cl-stripe-card.StripeElement--invalid {",
    "  border-color: var(--cl-danger); }",
  ].join("\n");

  let htmlPolicy; // Trusted Types policy, created once per page

  /** Markup from our own API (server-rendered with autoescaping), passed through a Trusted
   *  Types policy named "checkoutlab" when the page enforces Trusted Types. */
  function trustedHTML(html) {
    const tt = global.trustedTypes;
    if (!tt || typeof tt.createPolicy !== "function") return html;
    if (htmlPolicy === undefined) {
      try {
        htmlPolicy = tt.createPolicy("checkoutlab", { createHTML: (s) => s });
      } catch (err) {
        htmlPolicy = null;
      }
    }
    return htmlPolicy ? htmlPolicy.createHTML(html) : html;
  }

  function constructSheet(css) {
    try {
      if (typeof global.CSSStyleSheet !== "function") return null;
      const sheet = new global.CSSStyleSheet();
      if (typeof sheet.replaceSync !== "function") return null;
      sheet.replaceSync(css);
      return sheet;
    } catch (err) {
      return null;
    }
  }

  /**
   * A host element in the container with an open shadow root (open so that assistive tech
   * tooling and Playwright's label locators reach the inputs). Returns {host, root}; without
   * Shadow DOM the root is the host itself (the form's CSS is scoped under .cl-root anyway).
   */
  function createMount(container) {
    const doc = container.ownerDocument;
    let host;
    try {
      host = doc.createElement("checkoutlab-payment");
    } catch (err) {
      host = doc.createElement("div");
    }
    host.setAttribute("data-checkoutlab", VERSION);
    container.appendChild(host);
    let root = host;
    let shadow = false;
    if (typeof host.attachShadow === "function") {
      try {
        root = host.attachShadow({ mode: "open" });
        shadow = true;
      } catch (err) {
        root = host;
      }
    }
    return { host: host, root: root, shadow: shadow, doc: doc };
  }

  /** Apply stylesheets: adopted constructable sheets (CSP-proof), else <style> elements. */
  function applyStyles(mount, cssList, nonce) {
    const sheets = cssList.map(constructSheet);
    const target = mount.shadow ? mount.root : mount.doc;
    if (sheets.every(Boolean) && target && "adoptedStyleSheets" in target) {
      if (mount.shadow) {
        target.adoptedStyleSheets = sheets;
      } else {
        const previous = mount.sheets || [];
        target.adoptedStyleSheets = target.adoptedStyleSheets
          .filter((s) => previous.indexOf(s) < 0)
          .concat(sheets);
      }
      mount.sheets = sheets;
      return;
    }
    // Fallback: <style> elements (under a strict style-src they need merchantConfig.nonce).
    for (const old of Array.from(mount.root.querySelectorAll("style[data-checkoutlab]"))) old.remove();
    const anchor = mount.root.firstChild;
    for (const css of cssList) {
      const style = mount.doc.createElement("style");
      style.setAttribute("data-checkoutlab", "");
      if (nonce) style.nonce = nonce;
      style.textContent = css;
      mount.root.insertBefore(style, anchor);
    }
  }

  function el(doc, tag, attrs, text) {
    const node = doc.createElement(tag);
    for (const name of Object.keys(attrs || {})) {
      const value = attrs[name];
      if (value === true) node.setAttribute(name, "");
      else if (value !== false && value != null) node.setAttribute(name, String(value));
    }
    if (text != null) node.textContent = text;
    return node;
  }

  const STRIPE_JS_WAIT_MS = 10000;

  /**
   * window.Stripe, or null. When the page has a Stripe.js script tag that has not run yet
   * (async or dynamically injected, as @stripe/stripe-js's loadStripe does), wait for it, up to
   * `timeoutMs`; without such a tag, answer at once.
   */
  function waitForStripeJs(g, doc, timeoutMs) {
    if (typeof g.Stripe === "function") return Promise.resolve(g.Stripe);
    let script = null;
    try {
      script = doc.querySelector('script[src^="https://js.stripe.com/"]');
    } catch (err) {
      script = null;
    }
    if (!script) return Promise.resolve(null);
    return new Promise((resolve) => {
      const started = Date.now();
      const poll = setInterval(check, 50);
      function done() {
        clearInterval(poll);
        script.removeEventListener("load", check);
        script.removeEventListener("error", fail);
        resolve(typeof g.Stripe === "function" ? g.Stripe : null);
      }
      function check() {
        if (typeof g.Stripe === "function" || Date.now() - started >= timeoutMs) done();
      }
      function fail() {
        done();
      }
      script.addEventListener("load", check);
      script.addEventListener("error", fail);
    });
  }

  /** The card Element's text style from `appearance` (colours as #hex or rgb() only, which
   *  Stripe accepts; the frame cannot read the page's CSS custom properties). */
  function stripeStyle(appearance) {
    const props = {};
    for (const pair of appearance || []) props[pair[0]] = pair[1];
    const color = (value) => (value && /^(#[0-9a-f]{3,8}|rgba?\([\d\s.,%]+\))$/i.test(value) ? value : undefined);
    const base = { fontSize: "16px" };
    if (color(props["--cl-text"])) base.color = color(props["--cl-text"]);
    if (props["--cl-font"] && !/var\(/.test(props["--cl-font"])) base.fontFamily = props["--cl-font"];
    const style = { base: base };
    if (color(props["--cl-danger"])) style.invalid = { color: color(props["--cl-danger"]), iconColor: color(props["--cl-danger"]) };
    return style;
  }

  // ------------------------------------------------------------------------------------------
  // One checkout on one container
  // ------------------------------------------------------------------------------------------

  const mounted = typeof WeakMap === "function" ? new WeakMap() : null;

  const STATUS = {
    loading: "loading",
    ready: "ready",
    processing: "processing",
    requiresAction: "requires_action",
    declined: "declined",
    error: "error",
    succeeded: "succeeded",
    failed: "failed",
    canceled: "canceled",
  };

  function Checkout(config, userContext) {
    this.config = config;
    this.userContext = userContext || {};
    this.locale = config.locale || (global.navigator && global.navigator.language) || "en";
    this.abort = new AbortController();
    this.finished = false;
    this.busy = false;
    this.cancelRequested = false;
    this.status = null;
    this.profile = null;
    this.method = null;
    this.assertion = null;
    this.challenge = null;
    this.unresolved = null; // {key, json}: a confirm whose outcome is unknown (network error)
    this.focused = {};
    this.touched = {};
    this.started = Date.now();
    this.ids = { session_id: null, decision_id: null };
    this.listeners = [];
    this.requestId = newRequestId(global);
    this.stripe = null; // the Stripe.js instance, in Stripe mode
    this.stripeCard = null; // the mounted card Element
    this.stripeActions = {};
    this.api = createApiClient({
      publishableKey: config.publishableKey,
      apiBase: config.apiBase,
      timeoutMs: config.timeoutMs,
      requestId: this.requestId,
      onRetry: () => {
        if (this.statusText && !this.finished) this.showStatus("retrying", { state: "busy" });
      },
    });
    this.events = createEventReporter(this.api, this.ids);
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  Checkout.prototype.t = function (key, vars) {
    return translate(this.profile ? this.profile.ui.locale : this.locale, key, vars);
  };

  Checkout.prototype.on = function (target, type, handler, options) {
    target.addEventListener(type, handler, options);
    this.listeners.push(() => target.removeEventListener(type, handler, options));
  };

  Checkout.prototype.emit = function (status, detail) {
    if (this.status === status && !detail) return;
    this.status = status;
    if (this.config.onStatus) {
      try {
        this.config.onStatus(status, detail || {});
      } catch (err) {
        // A bug in the merchant's callback must not break the payment.
        if (global.console) global.console.error("Checkoutlab: onStatus threw", err);
      }
    }
  };

  Checkout.prototype.start = function () {
    const config = this.config;
    const previous = mounted && mounted.get(config.container);
    if (previous && previous !== this) previous.cancel("replaced");
    if (mounted) mounted.set(config.container, this);
    if (config.signal) {
      if (config.signal.aborted) {
        this.finish({ status: "canceled" });
        return this.promise;
      }
      this.on(config.signal, "abort", () => this.cancel("signal"));
    }
    // Forms left by earlier (finished) checkouts in this container.
    for (const old of Array.from(config.container.children || [])) {
      if (old.hasAttribute && old.hasAttribute("data-checkoutlab")) old.remove();
    }
    this.mount = createMount(config.container);
    applyStyles(this.mount, [WIDGET_CSS], config.nonce);
    this.renderShell();
    this.emit(STATUS.loading);
    this.on(global, "pagehide", () => this.onPageHide());
    this.on(this.mount.doc, "visibilitychange", () => {
      if (this.mount.doc.visibilityState === "hidden") this.events.flush();
    });
    this.load();
    return this.promise;
  };

  /** Before the form exists: a themed root with the status region (loading / load error). */
  Checkout.prototype.renderShell = function () {
    const doc = this.mount.doc;
    const root = el(doc, "div", { class: "cl-root cl-boot", lang: languageOf(this.locale) });
    this.root = root;
    this.applyAppearance();
    this.replaceContent(root);
    this.renderFooter(root);
    this.showStatus("loading", { state: "busy" });
  };

  Checkout.prototype.replaceContent = function (node) {
    const root = this.mount.root;
    for (const child of Array.from(root.childNodes)) {
      if (!(child.nodeName === "STYLE" && child.hasAttribute("data-checkoutlab"))) child.remove();
    }
    root.appendChild(node);
  };

  Checkout.prototype.applyAppearance = function () {
    for (const pair of this.config.appearance) this.root.style.setProperty(pair[0], pair[1]);
  };

  /** Status region (role=status, polite; assertive for errors) with a retry button, and the
   *  cancel button. Built with DOM calls, not markup. */
  Checkout.prototype.renderFooter = function (parent) {
    const doc = this.mount.doc;
    const footer = el(doc, "div", { class: "cl-widget-footer", "data-role": "widget-footer" });
    const status = el(doc, "div", {
      class: "cl-status",
      "data-role": "status",
      role: "status",
      "aria-live": "polite",
      hidden: true,
    });
    const text = el(doc, "p", { class: "cl-status-text", "data-role": "status-text" });
    const actions = el(doc, "div", { class: "cl-status-actions" });
    const retry = el(doc, "button", { type: "button", class: "cl-retry", "data-action": "retry", hidden: true }, this.t("retry"));
    actions.appendChild(retry);
    status.appendChild(text);
    status.appendChild(actions);
    footer.appendChild(status);
    this.on(retry, "click", () => {
      const action = this.retryAction;
      this.retryAction = null;
      retry.hidden = true;
      if (action) action();
    });
    if (this.config.cancelButton) {
      const cancel = el(doc, "button", { type: "button", class: "cl-link-button", "data-action": "cancel" }, this.t("cancel"));
      this.on(cancel, "click", () => this.cancel("shopper"));
      footer.appendChild(cancel);
      this.cancelButton = cancel;
    }
    parent.appendChild(footer);
    this.statusBox = status;
    this.statusText = text;
    this.retryButton = retry;
  };

  /**
   * Show a status to the shopper. `state`: busy | ready | succeeded | declined | error |
   * failed | canceled | requires_action. `retry`: a function offered behind a "Try again"
   * button. `message` overrides the translated text of `key`.
   */
  Checkout.prototype.showStatus = function (key, options) {
    const o = options || {};
    if (!this.statusBox) return;
    const message = o.message || (key ? this.t(key, o.vars) : "");
    this.statusBox.hidden = !message;
    this.statusBox.setAttribute("data-state", o.state || key || "");
    this.statusBox.setAttribute("aria-live", /declined|error|failed/.test(o.state || "") ? "assertive" : "polite");
    this.statusBox.setAttribute("aria-busy", o.state === "busy" ? "true" : "false");
    this.statusText.textContent = message;
    this.retryAction = o.retry || null;
    this.retryButton.textContent = this.t("retry");
    this.retryButton.hidden = !o.retry;
  };

  Checkout.prototype.clearStatus = function () {
    this.showStatus(null, { message: "" });
  };

  // -- loading the profile and the form --------------------------------------------------------

  Checkout.prototype.load = async function () {
    if (this.finished) return;
    this.showStatus("loading", { state: "busy" });
    this.emit(STATUS.loading);
    try {
      if (!this.context) {
        const detected = await detectCapabilities(global, { locale: this.config.locale });
        this.context = mergeContext(detected, this.userContext);
      }
      if (this.config.stripe && !this.stripe) {
        this.stripe = await this.initStripe();
        if (this.finished) return;
      }
      const signal = this.abort.signal;
      if (!this.profile) {
        const res = await this.api.request(
          "/v1/payment_profile",
          { client_secret: this.config.clientSecret, context: this.context },
          { signal: signal },
        );
        if (!res.ok) return this.loadFailed(res);
        this.profile = res.body;
        this.ids.session_id = this.profile.session_id;
        this.ids.decision_id = this.profile.id;
      }
      const res = await this.api.request("/v1/elements", { token: this.profile.token }, { signal: signal });
      if (!res.ok) return this.loadFailed(res);
      if (this.finished) return;
      this.render(res.body);
    } catch (err) {
      if (this.finished || (err && err.name === "AbortError")) return;
      if (err && err.code === "checkoutlab_misuse") {
        this.fail(err);
        return;
      }
      this.showStatus("network", { state: "error", retry: () => this.load() });
      this.emit(STATUS.error, { reason: "network" });
    }
  };

  /** An HTTP error while loading: configuration mistakes reject the promise with the
   *  server's words; an expired or paid session resolves "failed"; 5xx offers a retry. */
  Checkout.prototype.loadFailed = function (res) {
    const error = (res.body && res.body.error) || {};
    if (res.status === 401 || res.status === 403 || (res.status === 404 && !this.profile)) {
      this.showStatus("unavailable", { state: "failed" });
      this.fail(
        configError(
          (error.message || "the API refused the request") +
            " (" + (error.code || "HTTP " + res.status) + "; check merchantConfig.publishableKey and clientSecret)",
        ),
      );
      return;
    }
    if (res.status >= 500 || res.status === 429 || res.status === 408) {
      this.showStatus("network", { state: "error", retry: () => this.load() });
      this.emit(STATUS.error, { reason: error.code || "http_" + res.status });
      return;
    }
    const info = describeApiError(error);
    this.showStatus(info.key && info.terminal ? info.key : "unavailable", { state: "failed" });
    this.finish({ status: "failed", reason: error.code || "http_" + res.status, error: error });
  };

  Checkout.prototype.render = function (elements) {
    const doc = this.mount.doc;
    applyStyles(this.mount, [WIDGET_CSS, elements.css || ""], this.config.nonce);
    const template = doc.createElement("template");
    try {
      template.innerHTML = trustedHTML(elements.html || "");
    } catch (err) {
      this.fail(
        configError(
          "the page's Trusted Types policy refused the form's markup. Allow the policy name " +
            "'checkoutlab' in your CSP trusted-types directive.",
        ),
      );
      return;
    }
    const root = template.content.querySelector(".cl-root");
    if (!root) {
      this.showStatus("unavailable", { state: "error", retry: () => this.load() });
      this.emit(STATUS.error, { reason: "invalid_response" });
      return;
    }
    this.root = root;
    this.applyAppearance();
    this.form = root.querySelector('[data-role="payment-form"]');
    this.renderFooter(root);
    if (this.cancelButton && !this.form) this.cancelButton.hidden = true;
    this.replaceContent(root);

    if (!this.form) {
      // Nothing can be paid: everything is out of stock, or no method fits this checkout.
      const reason = root.querySelector('[data-role="out-of-stock"]') ? "out_of_stock" : "no_methods";
      this.clearStatus();
      this.finish({ status: "failed", reason: reason });
      return;
    }
    if (this.stripe && !this.mountStripeCard()) return;
    this.wire();
    this.clearStatus();
    this.emit(STATUS.ready);
    const profile = this.profile;
    this.events.track("exposure", {
      layout: root.getAttribute("data-layout"),
      locale: profile.ui && profile.ui.locale,
      methods: (profile.methods || []).map((m) => m.type),
      verification: Object.keys(profile.verification || {}).filter((k) => profile.verification[k]),
      experiment: profile.experiment ? profile.experiment.key : null,
      variant: profile.experiment ? profile.experiment.variant : null,
      policy: profile.ordering ? profile.ordering.policy : null,
    });
  };

  // -- Stripe mode ---------------------------------------------------------------------------------
  //
  // With merchantConfig.stripe the card is collected by Stripe.js Elements (loaded by the
  // merchant from js.stripe.com) and the platform receives only the PaymentMethod id (PCI DSS
  // SAQ-A). Nothing falls back to the widget's own card fields: without Stripe.js the widget
  // fails loudly.

  /** Stripe.js refuses to mount Elements inside a shadow root ("Elements cannot be mounted in
   *  a ShadowRoot. Please mount in the Light DOM."): its frames must be reachable from the
   *  page. The mount point is therefore a light-DOM child of the widget's host element,
   *  projected into the form, where the card fields were, through a <slot> of this name. */
  const STRIPE_SLOT = "checkoutlab-stripe-card";

  Checkout.prototype.stripeFailure = function (detail) {
    const error = configError(detail);
    if (global.console) global.console.error(error.message);
    this.showStatus("stripe_unavailable", { state: "failed" });
    return error;
  };

  /** The Stripe instance for merchantConfig.stripe.publishableKey. Waits for a Stripe.js
   *  script tag that is still loading; throws a misuse error (after saying so in the console
   *  and to the shopper) when Stripe.js is not on the page. */
  Checkout.prototype.initStripe = async function () {
    const factory = await waitForStripeJs(global, this.mount.doc, STRIPE_JS_WAIT_MS);
    if (this.finished) return null;
    if (typeof factory !== "function") {
      throw this.stripeFailure(
        "merchantConfig.stripe is set but Stripe.js is not loaded (window.Stripe is missing). Add " +
          "<script src=\"https://js.stripe.com/v3/\"></script> to the page before calling " +
          "orchestratePayment, and allow js.stripe.com in your Content-Security-Policy. In Stripe " +
          "mode card details never go to Checkout Lab, so the widget does not fall back to its own " +
          "card fields.",
      );
    }
    let stripe = null;
    try {
      stripe = factory(this.config.stripe.publishableKey);
    } catch (err) {
      throw this.stripeFailure("Stripe(merchantConfig.stripe.publishableKey) failed: " + (err && err.message));
    }
    if (!stripe || typeof stripe.elements !== "function" || typeof stripe.createPaymentMethod !== "function") {
      throw this.stripeFailure(
        "window.Stripe is not Stripe.js v3 (no elements() / createPaymentMethod()). Load it from " +
          "https://js.stripe.com/v3/.",
      );
    }
    return stripe;
  };

  /** Replace the form's card number / expiry / CVC inputs with Stripe's card Element. Returns
   *  false (after failing the checkout loudly) when it cannot be mounted. */
  Checkout.prototype.mountStripeCard = function () {
    const number = this.input("card_number");
    if (!number) return true; // no card method in this form
    const mount = this.mount;
    const doc = mount.doc;
    const page = typeof mount.host.getRootNode === "function" ? mount.host.getRootNode() : doc;
    if (page !== doc) {
      this.fail(
        this.stripeFailure(
          "merchantConfig.container is inside a shadow root, and Stripe Elements can only be " +
            "mounted in the light DOM. Put the container directly in the page's document.",
        ),
      );
      return false;
    }
    const target = el(doc, "div", { class: "cl-stripe-card", "data-role": "stripe-card" });
    const field = el(doc, "div", { class: "cl-field cl-stripe-field", "data-role": "stripe-card-field" });
    field.appendChild(el(doc, "span", { class: "cl-label", id: "cl-stripe-card-label" }, this.t("card_details")));
    if (mount.shadow) {
      target.setAttribute("slot", STRIPE_SLOT);
      field.appendChild(el(doc, "slot", { name: STRIPE_SLOT }));
    } else {
      field.appendChild(target);
    }
    field.appendChild(
      el(doc, "p", { class: "cl-error", id: "cl-stripe-card-error", "data-role": "error", "data-for": "stripe_card", "aria-live": "polite" }),
    );
    const numberField = number.closest(".cl-field") || number;
    numberField.parentNode.insertBefore(field, numberField);
    for (const name of ["card_number", "exp", "cvc"]) {
      const input = this.input(name);
      if (!input) continue;
      const wrapper = input.closest(".cl-field") || input;
      const row = wrapper.parentNode;
      wrapper.remove();
      if (row && row.classList && row.classList.contains("cl-row") && !row.querySelector(".cl-field")) row.remove();
    }
    // The card fields are gone. So is CVC re-entry (verification.cvv): the CVC lives in
    // Stripe's frame, which the issuer checks, and must never reach the platform.
    if (mount.shadow) {
      for (const old of Array.from(mount.host.children)) {
        if (old.getAttribute("slot") === STRIPE_SLOT) old.remove();
      }
      mount.host.appendChild(target);
    }
    const profile = this.profile;
    let card;
    try {
      const elements = this.stripe.elements({ locale: languageOf(profile.ui && profile.ui.locale) });
      card = elements.create("card", {
        hidePostalCode: !!(profile.verification && profile.verification.avs), // asked by the form
        style: stripeStyle(this.config.appearance),
      });
      card.mount(target);
    } catch (err) {
      this.fail(this.stripeFailure("Stripe Elements could not be mounted: " + (err && err.message)));
      return false;
    }
    this.stripeCard = card;
    if (typeof card.on === "function") {
      card.on("change", (event) => {
        this.setFieldError("stripe_card", event && event.error && event.error.message ? event.error.message : "");
      });
      card.on("focus", () => {
        if (this.focused.stripe_card) return;
        this.focused.stripe_card = true;
        this.events.track("interaction", { action: "field_focus", field: "stripe_card" });
      });
    }
    return true;
  };

  /** Stripe's billing_details from the form: the name on the card and, when the profile
   *  asks for address verification, the billing address. */
  Checkout.prototype.billingDetails = function (payment) {
    const details = {};
    const name = this.input("cardholder_name");
    if (name && normalizeText(name.value).trim()) details.name = normalizeText(name.value).trim();
    const address = payment.verification && payment.verification.billing_address;
    if (address) {
      details.address = { line1: address.line1, postal_code: address.postal_code, country: address.country };
    }
    return details;
  };

  /**
   * stripe.createPaymentMethod for the card Element. Resolves to the PaymentMethod id, or
   * null after showing Stripe's message in the form's error region (no confirm is sent).
   */
  Checkout.prototype.createStripePaymentMethod = async function (payment) {
    this.setBusy(true);
    this.showStatus("processing", { state: "busy" });
    this.emit(STATUS.processing);
    let result;
    try {
      result = await this.stripe.createPaymentMethod({
        type: "card",
        card: this.stripeCard,
        billing_details: this.billingDetails(payment),
      });
    } catch (err) {
      if (global.console) global.console.error("Checkoutlab: stripe.createPaymentMethod threw", err);
      result = null;
    }
    this.setBusy(false);
    if (this.cancelRequested) {
      this.finish({ status: "canceled" });
      return null;
    }
    if (this.finished) return null;
    const method = result && !result.error ? result.paymentMethod : null;
    if (method && typeof method.id === "string" && method.id) return method.id;
    const error = (result && result.error) || {};
    this.clearStatus();
    this.setFieldError("form", error.message || this.t("stripe_failed"));
    if (error.type === "validation_error" && typeof this.stripeCard.focus === "function") this.stripeCard.focus();
    this.events.track("interaction", { action: "stripe_error", code: error.code || error.type || "stripe_error" });
    this.emit(STATUS.ready, { reason: error.code || "stripe_error" });
    return null;
  };

  /**
   * A Stripe next action (3-D Secure): stripe.handleNextAction with the PaymentIntent's client
   * secret, then the challenge endpoint, where the server reads the intent from Stripe and
   * confirms it (so the platform, not the browser, decides). Stripe's own result decides the
   * outcome reported; a next action that keeps coming back ends with an error, not a loop.
   */
  Checkout.prototype.handleStripeAction = async function (payment) {
    const count = (this.stripeActions[payment.id] || 0) + 1;
    this.stripeActions[payment.id] = count;
    this.challenge = payment;
    if (count > 3) {
      this.challenge = null;
      this.setBusy(false);
      this.showStatus("unavailable", { state: "error" });
      this.emit(STATUS.error, { reason: "next_action_loop", payment: payment });
      return;
    }
    this.setBusy(true);
    this.showStatus("requires_action", { state: "busy" });
    this.emit(STATUS.requiresAction, { payment: payment });
    let outcome = "succeeded";
    try {
      const result = await this.stripe.handleNextAction({ clientSecret: payment.next_action.client_secret });
      if (!result || result.error) outcome = "failed";
    } catch (err) {
      if (global.console) global.console.error("Checkoutlab: stripe.handleNextAction threw", err);
      outcome = "failed";
    }
    this.setBusy(false);
    if (this.finished) return;
    await this.completeChallenge(outcome);
  };

  // -- wiring the rendered form ----------------------------------------------------------------

  Checkout.prototype.q = function (selector) {
    return this.form.querySelector(selector);
  };

  Checkout.prototype.qa = function (selector) {
    return Array.from(this.form.querySelectorAll(selector));
  };

  Checkout.prototype.input = function (name) {
    return this.form.querySelector('[name="' + name + '"]:not([type="hidden"]):not([type="radio"])');
  };

  Checkout.prototype.wire = function () {
    const form = this.form;
    this.on(form, "submit", (event) => {
      event.preventDefault();
      this.submit();
    });

    // Method switching (tabs, accordion headers, list radios).
    for (const control of this.qa('[data-action="select-method"]')) {
      const type = control.getAttribute("data-method");
      if (control.type === "radio") {
        this.on(control, "change", () => control.checked && this.selectMethod(type, true));
      } else {
        this.on(control, "click", () => this.selectMethod(type, true));
      }
    }
    const tablist = this.q('[role="tablist"]');
    if (tablist) this.on(tablist, "keydown", (event) => this.onTabKey(event));
    const selected =
      (this.q('[data-role="selected-method"]') || {}).value ||
      (this.q('input[type="radio"][name="payment_method"]:checked') || {}).value ||
      ((this.profile.methods || [])[0] || {}).type;
    this.selectMethod(selected, false);

    this.wireCard();
    for (const name of ["cvv_recheck"]) {
      const input = this.input(name);
      if (input) {
        this.on(input, "input", () => {
          input.value = digitsOnly(input.value).slice(0, 4);
          this.revalidate(name);
        });
        this.on(input, "blur", () => this.blurValidate(name));
      }
    }
    for (const name of ["billing_line1", "billing_postal_code", "billing_country", "ideal_bank", "iban", "account_holder"]) {
      const input = this.input(name);
      if (!input) continue;
      this.on(input, input.tagName === "SELECT" ? "change" : "input", () => this.revalidate(name));
      this.on(input, "blur", () => this.blurValidate(name));
    }

    for (const button of this.qa('[data-action="payment-request"]')) {
      this.on(button, "click", () => this.payWithWallet(button.getAttribute("data-network"), button));
    }
    const biometric = this.q('[data-action="biometric"]');
    if (biometric) this.on(biometric, "click", () => this.runBiometric());
    const complete = this.q('[data-action="three-ds-complete"]');
    const failChallenge = this.q('[data-action="three-ds-fail"]');
    if (complete) this.on(complete, "click", () => this.completeChallenge("succeeded"));
    if (failChallenge) this.on(failChallenge, "click", () => this.completeChallenge("failed"));

    // First focus of each field, as an interaction (the field's name only, never its value).
    this.on(form, "focusin", (event) => {
      const name = event.target && event.target.name;
      if (!name || this.focused[name] || name === "payment_method") return;
      this.focused[name] = true;
      this.events.track("interaction", { action: "field_focus", field: name });
    });
  };

  Checkout.prototype.onTabKey = function (event) {
    const tabs = this.qa('[role="tab"]');
    const index = tabs.indexOf(event.target);
    if (index < 0) return;
    let next = -1;
    if (event.key === "ArrowRight" || event.key === "ArrowDown") next = (index + 1) % tabs.length;
    else if (event.key === "ArrowLeft" || event.key === "ArrowUp") next = (index - 1 + tabs.length) % tabs.length;
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = tabs.length - 1;
    if (next < 0) return;
    event.preventDefault();
    tabs[next].focus();
    this.selectMethod(tabs[next].getAttribute("data-method"), true);
  };

  /** Show one method's panel and mark its control selected/expanded/checked. */
  Checkout.prototype.selectMethod = function (type, byShopper) {
    if (!type) return;
    const changed = this.method !== type;
    this.method = type;
    for (const control of this.qa('[data-action="select-method"]')) {
      const on = control.getAttribute("data-method") === type;
      const role = control.getAttribute("role");
      if (role === "tab") {
        control.setAttribute("aria-selected", on ? "true" : "false");
        control.setAttribute("tabindex", on ? "0" : "-1");
      } else if (control.hasAttribute("aria-expanded")) {
        control.setAttribute("aria-expanded", on ? "true" : "false");
      } else if (control.type === "radio") {
        control.checked = on;
      }
    }
    for (const panel of this.qa(".cl-panel[data-method]")) {
      panel.hidden = panel.getAttribute("data-method") !== type;
    }
    const hidden = this.q('[data-role="selected-method"]');
    if (hidden) hidden.value = type;
    // CVC re-entry is about the card; the server only asks it of card payments.
    const cvvStep = this.q('[data-step="cvv"]');
    if (cvvStep) {
      cvvStep.hidden = type !== "card" || !!this.stripeCard; // Stripe mode: see mountStripeCard
      const section = this.q('[data-step="verification"]');
      if (section) {
        const steps = Array.from(section.querySelectorAll(".cl-step"));
        section.hidden = steps.length > 0 && steps.every((s) => s.hidden);
      }
    }
    if (changed && byShopper) {
      const position = (this.profile.methods || []).map((m) => m.type).indexOf(type);
      this.events.track("interaction", { action: "method_selected", method: type, position: position });
      this.clearStatus();
    }
  };

  Checkout.prototype.wireCard = function () {
    const number = this.input("card_number");
    const exp = this.input("exp");
    const cvc = this.input("cvc");
    if (number) {
      this.on(number, "keydown", (event) => {
        // Backspace right after a group space deletes the digit before it, not just the space.
        const at = number.selectionStart;
        if (event.key === "Backspace" && at === number.selectionEnd && at > 0 && number.value[at - 1] === " ") {
          number.setSelectionRange(at - 1, at - 1);
        }
      });
      this.on(number, "input", () => {
        const old = number.value;
        const caret = number.selectionStart == null ? old.length : number.selectionStart;
        const formatted = formatCardNumber(old);
        if (formatted !== old) {
          number.value = formatted;
          const digitsBefore = digitsOnly(old.slice(0, caret)).length;
          let pos = 0;
          let seen = 0;
          while (pos < formatted.length && seen < digitsBefore) {
            if (formatted[pos] !== " ") seen++;
            pos++;
          }
          try {
            if (number.ownerDocument.activeElement === number || this.mount.root.activeElement === number) {
              number.setSelectionRange(pos, pos);
            }
          } catch (err) {
            /* not focusable right now */
          }
        }
        this.updateBrand();
        this.revalidate("card_number");
      });
      this.on(number, "blur", () => this.blurValidate("card_number"));
    }
    if (exp) {
      this.on(exp, "input", (event) => {
        const deleting = !!(event.inputType && event.inputType.indexOf("delete") === 0);
        const formatted = formatExpiry(exp.value, { deleting: deleting });
        if (formatted !== exp.value) exp.value = formatted;
        this.revalidate("exp");
      });
      this.on(exp, "blur", () => this.blurValidate("exp"));
    }
    if (cvc) {
      this.on(cvc, "input", () => {
        const digits = digitsOnly(cvc.value).slice(0, 4);
        if (digits !== cvc.value) cvc.value = digits;
        this.revalidate("cvc");
      });
      this.on(cvc, "blur", () => this.blurValidate("cvc"));
    }
    this.updateBrand();
  };

  Checkout.prototype.updateBrand = function () {
    const number = this.input("card_number");
    if (!number) return;
    const brand = detectBrand(digitsOnly(number.value));
    const card = number.closest(".cl-card");
    if (card) card.setAttribute("data-brand", brand);
    number.setAttribute("data-brand", brand);
    const cvc = this.input("cvc");
    if (cvc) cvc.maxLength = cvcLength(brand);
    const recheck = this.input("cvv_recheck");
    if (recheck) recheck.maxLength = cvcLength(brand);
  };

  Checkout.prototype.readValues = function () {
    const values = {};
    for (const name of [
      "card_number", "exp", "cvc", "cvv_recheck", "billing_line1", "billing_postal_code",
      "billing_country", "ideal_bank", "iban", "account_holder",
    ]) {
      const input = this.input(name);
      if (input) values[name] = input.value;
    }
    const redeem = this.input("redeem_points");
    values.redeem_points = !!(redeem && redeem.checked);
    return values;
  };

  Checkout.prototype.validateNow = function () {
    return buildPayment(this.readValues(), {
      method: this.method,
      verification: this.profile.verification,
      stripe: !!this.stripeCard,
    });
  };

  Checkout.prototype.setFieldError = function (name, message) {
    const slot = this.q('[data-role="error"][data-for="' + name + '"]');
    if (slot) slot.textContent = message || "";
    const input = this.input(name) || (name === "form" ? null : this.q('[name="' + name + '"]'));
    if (input) {
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    return !!slot;
  };

  Checkout.prototype.fieldMessage = function (error) {
    return this.t(error.key, error.vars);
  };

  /** On blur: validate a field the shopper has typed in (empty untouched fields stay quiet). */
  Checkout.prototype.blurValidate = function (name) {
    const input = this.input(name);
    if (!input || (!input.value && !this.touched[name])) return;
    this.touched[name] = true;
    const error = this.validateNow().errors[name];
    this.setFieldError(name, error ? this.fieldMessage(error) : "");
  };

  /** While typing: clear a field's message as soon as it is valid; never add one mid-typing. */
  Checkout.prototype.revalidate = function (name) {
    const slot = this.q('[data-role="error"][data-for="' + name + '"]');
    if (!slot || !slot.textContent) return;
    const error = this.validateNow().errors[name];
    if (!error) this.setFieldError(name, "");
    else this.setFieldError(name, this.fieldMessage(error));
  };

  Checkout.prototype.showErrors = function (errors) {
    const names = Object.keys(errors);
    for (const name of names) {
      this.touched[name] = true;
      this.setFieldError(name, this.fieldMessage(errors[name]));
    }
    this.setFieldError("form", names.length ? this.t("fix_fields") : "");
    const first = names.map((n) => this.input(n)).filter(Boolean)[0];
    if (first) first.focus();
  };

  Checkout.prototype.clearFieldErrors = function () {
    for (const slot of this.qa('[data-role="error"]')) slot.textContent = "";
    for (const input of this.qa('[aria-invalid="true"]')) input.removeAttribute("aria-invalid");
  };

  /** Disable the form while a request is in flight (and for good once finished). */
  Checkout.prototype.setBusy = function (busy) {
    this.busy = busy;
    const submit = this.q('[data-action="submit"]');
    if (submit) {
      submit.disabled = busy || !!this.challenge;
      submit.setAttribute("aria-busy", busy ? "true" : "false");
    }
    for (const button of this.qa('[data-action="payment-request"], [data-action="biometric"]')) {
      button.disabled = busy || !!this.challenge || (button.getAttribute("data-action") === "biometric" && !!this.assertion);
    }
    for (const button of this.qa('[data-action^="three-ds-"]')) button.disabled = busy;
    if (this.cancelButton) this.cancelButton.disabled = busy;
  };

  Checkout.prototype.lockForm = function () {
    if (!this.form) return;
    for (const control of this.qa("input, select, textarea, button")) control.disabled = true;
    if (this.stripeCard && typeof this.stripeCard.update === "function") {
      try {
        this.stripeCard.update({ disabled: true });
      } catch (err) {
        /* already destroyed */
      }
    }
    if (this.cancelButton) this.cancelButton.hidden = true;
  };

  // -- paying ------------------------------------------------------------------------------------

  Checkout.prototype.submit = async function () {
    if (this.busy || this.finished || this.challenge) return;
    const method = this.method;
    if (WALLETS.indexOf(method) >= 0) {
      const button = this.q('[data-action="payment-request"][data-network="' + method + '"]');
      return this.payWithWallet(method, button);
    }
    const result = this.validateNow();
    this.clearFieldErrors();
    if (!result.payment) {
      this.showErrors(result.errors);
      return;
    }
    // Before any await: WebAuthn needs the click's user activation.
    if (!(await this.ensureBiometric())) return;
    this.events.track("interaction", { action: "submit", method: method });
    if (method === "card" && this.stripeCard) {
      const token = await this.createStripePaymentMethod(result.payment);
      if (!token) return;
      result.payment.payment_method = { type: "card", token: token };
    }
    await this.confirm(result.payment);
  };

  /** Run the biometric step when the profile requires it and it has not been done. */
  Checkout.prototype.ensureBiometric = async function () {
    if (!this.profile.verification || !this.profile.verification.biometric || this.assertion) return true;
    const ok = await this.runBiometric();
    if (!ok) this.setFieldError("form", this.t("biometric_required"));
    return ok;
  };

  /**
   * Biometric confirmation. With WebAuthn (PublicKeyCredential), asks the platform
   * authenticator for an assertion with userVerification "required" over a random challenge
   * and sends its parts base64url-encoded. NOTE: the sandbox server only checks that an
   * assertion is present; it does not verify it cryptographically (no registered credential,
   * no server-issued challenge). A production verifier must issue the challenge and check the
   * signature against the shopper's registered credential.
   * With a test key (pk_test_), when the merchant simulates the capability
   * (userContext.device.biometric) or WebAuthn is unavailable or fails, a fixed
   * "sandbox-simulated-assertion" is used so the flow can be exercised without hardware.
   */
  Checkout.prototype.runBiometric = async function () {
    if (this.assertion) return true;
    const button = this.q('[data-action="biometric"]');
    const sandbox = this.config.sandbox;
    const simulated =
      sandbox && isPlainObject(this.userContext.device) && this.userContext.device.biometric === true;
    const PKC = global.PublicKeyCredential;
    const credentials = global.navigator && global.navigator.credentials;
    let assertion = null;
    let outcome = "simulated";
    if (!simulated && PKC && credentials && typeof credentials.get === "function") {
      try {
        const challenge = global.crypto.getRandomValues(new Uint8Array(32));
        const credential = await credentials.get({
          publicKey: { challenge: challenge, userVerification: "required", timeout: 60000 },
          signal: this.abort.signal,
        });
        const r = credential && credential.response;
        if (r && r.authenticatorData && r.clientDataJSON) {
          assertion =
            "webauthn." +
            [credential.rawId, r.authenticatorData, r.clientDataJSON, r.signature]
              .map((part) => (part ? base64url(part) : ""))
              .join(".");
          outcome = "webauthn";
        }
      } catch (err) {
        assertion = null; // NotAllowedError: canceled, timed out, or no credential for this site
      }
      if (!assertion && !sandbox) {
        this.setFieldError("biometric", this.t("biometric_failed"));
        this.events.track("interaction", { action: "biometric", outcome: "failed" });
        return false;
      }
    } else if (!simulated && !sandbox) {
      this.setFieldError("biometric", this.t("biometric_unavailable"));
      return false;
    }
    if (!assertion) {
      if (!simulated && global.console) {
        global.console.warn("Checkoutlab: sandbox key, using a simulated biometric assertion");
      }
      assertion = SANDBOX_ASSERTION;
    }
    this.assertion = assertion;
    this.setFieldError("biometric", "");
    this.setFieldError("form", "");
    if (button) {
      button.setAttribute("aria-pressed", "true");
      button.disabled = true;
      let note = button.parentNode.querySelector('[data-role="biometric-status"]');
      if (!note) {
        note = el(this.mount.doc, "p", { class: "cl-hint", "data-role": "biometric-status", role: "status" });
        button.insertAdjacentElement("afterend", note);
      }
      note.textContent = this.t("biometric_confirmed");
    }
    this.events.track("interaction", { action: "biometric", outcome: outcome, simulated: assertion === SANDBOX_ASSERTION });
    return true;
  };

  /** Common verification and loyalty fields for methods without card data (wallets). */
  Checkout.prototype.walletPayment = function (network) {
    const result = buildPayment(this.readValues(), { method: network, verification: this.profile.verification });
    return result;
  };

  /**
   * Wallet buttons. With a test key the wallet is simulated: confirm with
   * {type: "apple_pay" | "google_pay"} (the sandbox gateway needs no wallet token). With a live
   * key the Payment Request API shows the browser's sheet; NOTE the confirm API has no field
   * for the wallet's payment token yet, so live wallet payments need that server support.
   */
  Checkout.prototype.payWithWallet = async function (network, button) {
    if (this.busy || this.finished || this.challenge || !network) return;
    this.selectMethod(network, false);
    this.events.track("interaction", { action: "wallet", network: network });
    const result = this.walletPayment(network);
    this.clearFieldErrors();
    if (!result.payment) {
      this.showErrors(result.errors);
      return;
    }
    if (this.config.sandbox) {
      if (!(await this.ensureBiometric())) return;
      await this.confirm(result.payment);
      return;
    }
    const PR = global.PaymentRequest;
    if (typeof PR !== "function") {
      this.setFieldError(network, this.t("wallet_unavailable"));
      return;
    }
    let response = null;
    try {
      const request = new PR(this.walletMethodData(network, button), this.walletDetails(button));
      response = await request.show(); // rejects if the wallet cannot pay here
    } catch (err) {
      this.setFieldError(network, err && err.name === "AbortError" ? "" : this.t("wallet_unavailable"));
      return;
    }
    if (!(await this.ensureBiometric())) {
      await response.complete("fail").catch(() => {});
      return;
    }
    const outcome = await this.confirm(result.payment);
    await response.complete(outcome === "succeeded" ? "success" : "fail").catch(() => {});
  };

  Checkout.prototype.walletMethodData = function (network, button) {
    const method = (this.profile.methods || []).filter((m) => m.type === network)[0] || {};
    const config = method.config || {};
    const country = (button && button.getAttribute("data-country")) || config.country || undefined;
    if (network === "apple_pay") {
      return [{
        supportedMethods: "https://apple.com/apple-pay",
        data: Object.assign(
          { version: 3, merchantCapabilities: ["supports3DS"], supportedNetworks: ["visa", "masterCard", "amex", "discover"], countryCode: country },
          config.payment_request_data || {},
        ),
      }];
    }
    return [{
      supportedMethods: "https://google.com/pay",
      data: Object.assign({ apiVersion: 2, apiVersionMinor: 0 }, config.payment_request_data || {}),
    }];
  };

  Checkout.prototype.walletDetails = function (button) {
    const amount = this.profile.amount || {};
    const currency = (button && button.getAttribute("data-currency")) || amount.currency;
    let digits = 2;
    try {
      digits = new Intl.NumberFormat("en", { style: "currency", currency: currency }).resolvedOptions().maximumFractionDigits;
    } catch (err) {
      digits = 2;
    }
    const value = (Number(amount.value || 0) / Math.pow(10, digits)).toFixed(digits);
    return { total: { label: "Total", amount: { currency: currency, value: value } } };
  };

  /**
   * POST confirm. A fresh Idempotency-Key per attempt; the same key (and byte-identical body)
   * when the network failed and the shopper presses "Try again", so a lost answer is replayed
   * by the server rather than charged twice. If the shopper changes the form after such a
   * failure, the earlier attempt is settled first with its own key. Returns the outcome.
   */
  Checkout.prototype.confirm = async function (payment) {
    const body = Object.assign(
      { client_secret: this.config.clientSecret, profile_token: this.profile.token },
      payment,
    );
    if (this.assertion) body.verification = Object.assign({}, body.verification, { biometric_assertion: this.assertion });
    const json = JSON.stringify(body);
    const path = "/v1/checkout_sessions/" + encodeURIComponent(this.profile.session_id) + "/confirm";
    this.setBusy(true);
    this.showStatus("processing", { state: "busy" });
    this.emit(STATUS.processing);
    try {
      if (this.unresolved && this.unresolved.json !== json) {
        // Settle the earlier attempt first: it may have been charged although we never heard.
        const prior = this.unresolved;
        const res = await this.api.request(path, JSON.parse(prior.json), { idempotencyKey: prior.key });
        this.unresolved = null;
        const status = res.ok && res.body && res.body.status;
        if (status === "succeeded" || status === "processing" || status === "requires_action") {
          return this.handleConfirm(res);
        }
      }
      const attempt = this.unresolved || { key: randomId(), json: json };
      this.unresolved = attempt;
      const res = await this.api.request(path, body, { idempotencyKey: attempt.key });
      if (res.status >= 500 || res.status === 408 || res.status === 429) {
        // Still failing after the retries: the outcome is unknown, keep the key for "Try again".
        throw namedError("NetworkError", "Checkoutlab: confirm answered HTTP " + res.status);
      }
      this.unresolved = null;
      return this.handleConfirm(res);
    } catch (err) {
      this.setBusy(false);
      if (this.cancelRequested) return this.finish({ status: "canceled" });
      if (this.finished) return "finished";
      // Outcome unknown: keep `unresolved` so a retry reuses the key.
      this.showStatus("network", { state: "error", retry: () => this.confirm(payment) });
      this.emit(STATUS.error, { reason: err && err.name === "TimeoutError" ? "timeout" : "network" });
      return "error";
    }
  };

  /** Act on a confirm or challenge answer. Returns "succeeded" | "requires_action" |
   *  "declined" | "invalid" | "failed" | "error". */
  Checkout.prototype.handleConfirm = function (res) {
    this.setBusy(false);
    if (res.ok) {
      const payment = res.body || {};
      if (payment.status === "succeeded" || payment.status === "processing") {
        this.challenge = null;
        const three = this.q('[data-step="three_ds"]');
        if (three) three.hidden = true;
        this.showStatus(payment.status === "succeeded" ? "succeeded" : "pending", { state: "succeeded" });
        this.lockForm();
        this.finish({ status: "succeeded", payment: payment });
        return "succeeded";
      }
      if (payment.status === "requires_action" && payment.next_action && payment.next_action.type === "three_ds_challenge") {
        if (this.cancelRequested) {
          this.finish({ status: "canceled" });
          return "canceled";
        }
        const action = payment.next_action;
        if (this.stripe && typeof action.client_secret === "string" && action.client_secret &&
            (action.gateway == null || action.gateway === "stripe")) {
          this.handleStripeAction(payment);
        } else {
          this.showChallenge(payment);
        }
        return "requires_action";
      }
      this.showStatus("unavailable", { state: "error" });
      this.emit(STATUS.error, { reason: "unexpected_status", payment: payment });
      return "error";
    }
    if (this.cancelRequested) {
      this.finish({ status: "canceled" });
      return "canceled";
    }
    const error = (res.body && res.body.error) || {};
    if (res.status === 402 && error.payment) return this.showDecline(error);
    if (res.status >= 500 || res.status === 429 || res.status === 408) {
      this.showStatus("network", { state: "error" });
      this.emit(STATUS.error, { reason: error.code || "http_" + res.status });
      return "error";
    }
    const info = describeApiError(error);
    if (info.terminal || res.status === 401 || res.status === 403) {
      this.showStatus(info.key || "unavailable", { state: "failed" });
      this.lockForm();
      this.finish({ status: "failed", reason: error.code || "http_" + res.status, error: error });
      return "failed";
    }
    // A field the server refused (card checks, missing verification): point at it.
    const english = languageOf(this.profile.ui && this.profile.ui.locale) === "en";
    const vars = info.key === "cvc_invalid" ? { n: cvcLength(detectBrand(this.readValues().card_number)) } : undefined;
    const message = (english && info.message && info.key !== "required" && info.key !== "biometric_required")
      ? info.message
      : info.key
        ? this.t(info.key, vars)
        : info.message || this.t("unavailable");
    this.clearStatus();
    if (!this.setFieldError(info.field, message)) this.setFieldError("form", message);
    if (info.field !== "form") this.setFieldError("form", this.t("fix_fields"));
    const input = this.input(info.field);
    if (input) input.focus();
    this.emit(STATUS.ready, { reason: error.code });
    return "invalid";
  };

  /** A declined payment: say why, clear the card number (keep the rest), let them retry. */
  Checkout.prototype.showDecline = function (error) {
    this.challenge = null;
    const three = this.q('[data-step="three_ds"]');
    if (three) three.hidden = true;
    this.setBusy(false);
    const english = languageOf(this.profile.ui && this.profile.ui.locale) === "en";
    this.showStatus("declined", { state: "declined", message: english && error.message ? error.message : null });
    this.emit(STATUS.declined, { code: error.decline_code || error.code, payment: error.payment });
    const number = this.input("card_number");
    if (number && this.method === "card") {
      number.value = "";
      this.updateBrand();
      number.focus();
    }
    if (this.stripeCard && this.method === "card") {
      try {
        this.stripeCard.clear();
        this.stripeCard.focus();
      } catch (err) {
        /* an Element that was destroyed meanwhile */
      }
    }
    return "declined";
  };

  /** 3-D Secure: reveal the challenge step; its buttons finish the (sandbox) challenge. */
  Checkout.prototype.showChallenge = function (payment) {
    this.challenge = payment;
    const three = this.q('[data-step="three_ds"]');
    this.setBusy(false);
    // The revealed section explains the step (in the form's language); with no section,
    // the status region says it.
    if (three) this.clearStatus();
    else this.showStatus("requires_action", { state: "requires_action" });
    this.emit(STATUS.requiresAction, { payment: payment });
    if (three) {
      three.hidden = false;
      this.setFieldError("three_ds", "");
      const first = three.querySelector('[data-action="three-ds-complete"]');
      if (typeof three.scrollIntoView === "function") three.scrollIntoView({ block: "nearest" });
      if (first) first.focus();
    }
  };

  /**
   * POST the challenge outcome. Retried like confirm on network errors: the server moves a
   * payment out of requires_action at most once, so a repeat is answered with an error,
   * never a second charge.
   */
  Checkout.prototype.completeChallenge = async function (outcome) {
    const payment = this.challenge;
    if (!payment || this.busy || this.finished) return;
    this.events.track("interaction", { action: "three_ds", outcome: outcome });
    const path =
      "/v1/checkout_sessions/" + encodeURIComponent(this.profile.session_id) +
      "/payments/" + encodeURIComponent(payment.id) + "/challenge";
    this.setBusy(true);
    this.showStatus("processing", { state: "busy" });
    this.emit(STATUS.processing);
    try {
      const res = await this.api.request(path, { client_secret: this.config.clientSecret, outcome: outcome });
      if (!res.ok && res.status === 400 && res.body && res.body.error && res.body.error.code === "payment_unexpected_state") {
        // Our earlier attempt got through but its answer was lost: the step is done.
        this.challenge = null;
        const three = this.q('[data-step="three_ds"]');
        if (three) three.hidden = true;
        this.setBusy(false);
        this.showStatus("unavailable", { state: "error" });
        this.emit(STATUS.error, { reason: "payment_unexpected_state" });
        return;
      }
      this.handleConfirm(res);
    } catch (err) {
      this.setBusy(false);
      if (this.cancelRequested) return this.finish({ status: "canceled" });
      this.showStatus("network", { state: "error", retry: () => this.completeChallenge(outcome) });
      this.emit(STATUS.error, { reason: "network" });
    }
  };

  // -- ending ------------------------------------------------------------------------------------

  Checkout.prototype.finish = function (result) {
    if (this.finished) return result.status;
    this.finished = true;
    if (result.status === "canceled") {
      this.abort.abort();
      this.showStatus("canceled", { state: "canceled" });
      this.lockForm();
      this.events.track("abandon", { reason: "canceled", stage: this.status, method: this.method, elapsed_ms: Date.now() - this.started });
    }
    this.events.flush();
    for (const off of this.listeners.splice(0)) off();
    if (mounted && mounted.get(this.config.container) === this) mounted.delete(this.config.container);
    this.emit(result.status, result);
    const out = { status: result.status };
    if (result.payment) out.payment = result.payment;
    if (result.reason) out.reason = result.reason;
    if (result.error) out.error = result.error;
    this.resolve(out);
    return result.status;
  };

  Checkout.prototype.fail = function (error) {
    if (this.finished) return;
    this.finished = true;
    this.abort.abort();
    this.events.flush();
    for (const off of this.listeners.splice(0)) off();
    if (mounted && mounted.get(this.config.container) === this) mounted.delete(this.config.container);
    this.emit(STATUS.failed, { reason: "misuse" });
    this.reject(error);
  };

  /** Cancel from the shopper (button), the merchant (promise.cancel(), merchantConfig.signal)
   *  or a new orchestratePayment on the same container. A confirm already in flight is
   *  allowed to finish: if it charged, the result is "succeeded", not "canceled". */
  Checkout.prototype.cancel = function (reason) {
    if (this.finished) return;
    if (this.busy) {
      // A confirm or challenge is in flight: it may charge, so let it answer first.
      this.cancelRequested = true;
      return;
    }
    if (reason === "replaced" && this.mount && this.mount.host.parentNode) this.mount.host.remove();
    this.finish({ status: "canceled", reason: reason === "shopper" || !reason ? undefined : reason });
  };

  Checkout.prototype.onPageHide = function () {
    if (this.finished || !this.form) return;
    if (!this.abandonSent) {
      this.abandonSent = true;
      this.events.track("abandon", { reason: "pagehide", stage: this.status, method: this.method, elapsed_ms: Date.now() - this.started });
    }
    this.events.flush();
  };

  // ------------------------------------------------------------------------------------------
  // Entry point
  // ------------------------------------------------------------------------------------------

  /**
   * Mount the checkout form in `merchantConfig.container` and take the payment.
   *
   * @param {object} merchantConfig {publishableKey, clientSecret, container?, apiBase?, locale?,
   *   appearance?, onStatus?, signal?, cancelButton?, stripe?: {publishableKey}}
   * @param {object} [userContext] merged over the detected context (the merchant's keys win)
   * @returns {Promise<{status: "succeeded"|"failed"|"canceled", payment?, reason?}>} with a
   *   `cancel()` method. Rejects (does not resolve) for integration mistakes, with a message
   *   saying what to fix.
   */
  function orchestratePayment(merchantConfig, userContext) {
    let config;
    try {
      config = validateConfig(merchantConfig, userContext, global);
    } catch (err) {
      const rejected = Promise.reject(err);
      rejected.cancel = function () {};
      return rejected;
    }
    const checkout = new Checkout(config, userContext);
    let promise;
    try {
      promise = checkout.start();
    } catch (err) {
      promise = Promise.reject(err);
    }
    promise.cancel = function () {
      checkout.cancel("merchant");
    };
    promise.requestId = checkout.requestId; // the X-Request-Id of this checkout, for your logs
    return promise;
  }

  global.Checkoutlab = Object.freeze({
    version: VERSION,
    orchestratePayment: orchestratePayment,
    // pure logic, exported for tests and for merchants building their own fields
    luhnValid: luhnValid,
    detectBrand: detectBrand,
    formatCardNumber: formatCardNumber,
    cardNumberError: cardNumberError,
    formatExpiry: formatExpiry,
    parseExpiry: parseExpiry,
    expiryError: expiryError,
    validateCvc: validateCvc,
    cvcLength: cvcLength,
    ibanValid: ibanValid,
    backoffDelay: backoffDelay,
    shouldRetry: shouldRetry,
    mergeContext: mergeContext,
    detectCapabilities: detectCapabilities,
    validateConfig: validateConfig,
    appearanceProperties: appearanceProperties,
    buildPayment: buildPayment,
    describeApiError: describeApiError,
    eventProperties: eventProperties,
    createApiClient: createApiClient,
    newRequestId: newRequestId,
    translate: translate,
    BRAND_LENGTHS: BRAND_LENGTHS,
  });
})(globalThis);
