// Checkout Lab widget as an ES module: `import { orchestratePayment } from "/widget/checkoutlab.mjs"`.
//
// The code lives once, in checkoutlab.js, which is valid both as a classic script and as a
// module and whose only effect is to define globalThis.Checkoutlab. Importing it here runs
// it (once per page, whichever way it is loaded first); this file only re-exports by name.
import "./checkoutlab.js";

const Checkoutlab = globalThis.Checkoutlab;

export const {
  version,
  orchestratePayment,
  luhnValid,
  detectBrand,
  formatCardNumber,
  cardNumberError,
  formatExpiry,
  parseExpiry,
  expiryError,
  validateCvc,
  cvcLength,
  ibanValid,
  backoffDelay,
  shouldRetry,
  mergeContext,
  detectCapabilities,
  validateConfig,
  appearanceProperties,
  buildPayment,
  describeApiError,
  eventProperties,
  createApiClient,
  newRequestId,
  translate,
  BRAND_LENGTHS,
} = Checkoutlab;

export default Checkoutlab;
