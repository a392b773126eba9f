// A small fake browser for running a whole orchestratePayment in Node, with no dependency:
// a DOM just large enough for the widget (elements, shadow roots, <template> parsing, the
// compound selectors the widget uses, events), a scripted fetch that records every request,
// and a fake Stripe.js that records its calls. Not a test file itself (no *.test.mjs name).

const VOID = new Set(["input", "br", "img", "meta", "link", "hr", "source", "col", "wbr"]);

class Node {
  constructor(doc) {
    this.ownerDocument = doc;
    this.parentNode = null;
    this.childNodes = [];
    this._listeners = {};
  }
  get firstChild() {
    return this.childNodes[0] || null;
  }
  get children() {
    return this.childNodes.filter((n) => n.nodeType === 1);
  }
  appendChild(node) {
    return this.insertBefore(node, null);
  }
  insertBefore(node, ref) {
    if (node.nodeType === 11 && !node.host) {
      for (const child of node.childNodes.slice()) this.insertBefore(child, ref);
      return node;
    }
    if (node.parentNode) node.remove();
    const index = ref ? this.childNodes.indexOf(ref) : -1;
    if (index < 0) this.childNodes.push(node);
    else this.childNodes.splice(index, 0, node);
    node.parentNode = this;
    return node;
  }
  remove() {
    if (!this.parentNode) return;
    const siblings = this.parentNode.childNodes;
    siblings.splice(siblings.indexOf(this), 1);
    this.parentNode = null;
  }
  get textContent() {
    return this.childNodes.map((n) => n.textContent).join("");
  }
  set textContent(value) {
    for (const child of this.childNodes) child.parentNode = null;
    this.childNodes = [];
    if (value !== "" && value != null) this.appendChild(new Text(this.ownerDocument, String(value)));
  }
  addEventListener(type, handler) {
    (this._listeners[type] = this._listeners[type] || []).push(handler);
  }
  removeEventListener(type, handler) {
    const list = this._listeners[type] || [];
    const index = list.indexOf(handler);
    if (index >= 0) list.splice(index, 1);
  }
  dispatchEvent(event) {
    if (!event.target) event.target = this;
    for (let node = this; node && !event._stopped; node = node.parentNode || node.host || null) {
      for (const handler of (node._listeners[event.type] || []).slice()) handler.call(node, event);
      if (!event.bubbles) break;
    }
    return !event.defaultPrevented;
  }
  getRootNode() {
    let node = this;
    while (node.parentNode) node = node.parentNode;
    return node;
  }
  *descendants() {
    for (const child of this.childNodes) {
      if (child.nodeType !== 1) continue;
      yield child;
      yield* child.descendants();
    }
  }
  querySelectorAll(selector) {
    const groups = parseSelector(selector);
    return Array.from(this.descendants()).filter((el) => groups.some((g) => matchesComplex(el, g, this)));
  }
  querySelector(selector) {
    return this.querySelectorAll(selector)[0] || null;
  }
}

class Text extends Node {
  constructor(doc, data) {
    super(doc);
    this.nodeType = 3;
    this.nodeName = "#text";
    this.data = data;
  }
  get textContent() {
    return this.data;
  }
  set textContent(value) {
    this.data = String(value);
  }
}

class Fragment extends Node {
  constructor(doc) {
    super(doc);
    this.nodeType = 11;
    this.nodeName = "#document-fragment";
  }
}

class ShadowRoot extends Fragment {
  constructor(host) {
    super(host.ownerDocument);
    this.host = host;
    this.mode = "open";
    this.activeElement = null;
  }
}

const BOOLEAN_PROPS = ["hidden", "disabled"];

class Element extends Node {
  constructor(doc, tag) {
    super(doc);
    this.nodeType = 1;
    this.localName = tag.toLowerCase();
    this.tagName = this.nodeName = tag.toUpperCase();
    this.attributes = new Map();
    this.shadowRoot = null;
    this._props = {};
    const styles = {};
    this.style = { setProperty: (k, v) => (styles[k] = v), getPropertyValue: (k) => styles[k] || "" };
    if (this.localName === "template") this.content = new Fragment(doc);
    this.classList = {
      contains: (name) => (this.getAttribute("class") || "").split(/\s+/).includes(name),
      add: (name) => !this.classList.contains(name) && this.setAttribute("class", ((this.getAttribute("class") || "") + " " + name).trim()),
    };
  }
  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }
  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }
  hasAttribute(name) {
    return this.attributes.has(name);
  }
  removeAttribute(name) {
    this.attributes.delete(name);
  }
  get id() {
    return this.getAttribute("id") || "";
  }
  get name() {
    return this.getAttribute("name") || "";
  }
  get type() {
    return this.getAttribute("type") || (this.localName === "input" ? "text" : this.localName === "button" ? "submit" : "");
  }
  get value() {
    if ("value" in this._props) return this._props.value;
    if (this.localName === "select") {
      const options = this.querySelectorAll("option");
      const chosen = options.find((o) => o.hasAttribute("selected")) || options[0];
      return chosen ? chosen.getAttribute("value") ?? chosen.textContent : "";
    }
    return this.getAttribute("value") || "";
  }
  set value(v) {
    this._props.value = String(v);
  }
  get checked() {
    return "checked" in this._props ? this._props.checked : this.hasAttribute("checked");
  }
  set checked(v) {
    this._props.checked = !!v;
  }
  get isConnected() {
    return this.getRootNode() === this.ownerDocument || this.getRootNode().host?.isConnected === true;
  }
  set innerHTML(html) {
    const target = this.localName === "template" ? this.content : this;
    target.textContent = "";
    parseHTML(this.ownerDocument, String(html), target);
  }
  attachShadow(options) {
    if (this.shadowRoot) throw new Error("already has a shadow root");
    this.shadowRoot = new ShadowRoot(this);
    this.shadowRoot.mode = options.mode;
    return this.shadowRoot;
  }
  matches(selector) {
    return parseSelector(selector).some((g) => matchesComplex(this, g, null));
  }
  closest(selector) {
    for (let node = this; node && node.nodeType === 1; node = node.parentNode) {
      if (node.matches(selector)) return node;
    }
    return null;
  }
  focus() {
    const root = this.getRootNode();
    if (root.nodeType === 11 && root.host) root.activeElement = this;
    this.ownerDocument.activeElement = this;
  }
  blur() {}
  click() {
    if (this.disabled) return;
    this.dispatchEvent(makeEvent("click"));
    if (this.localName === "button" && this.type === "submit") {
      const form = this.closest("form");
      if (form) form.dispatchEvent(makeEvent("submit"));
    }
  }
  insertAdjacentElement(position, node) {
    if (position !== "afterend") throw new Error("fake DOM: only afterend");
    const next = this.parentNode.childNodes[this.parentNode.childNodes.indexOf(this) + 1] || null;
    this.parentNode.insertBefore(node, next);
    return node;
  }
  setSelectionRange() {}
  scrollIntoView() {}
  get selectionStart() {
    return this.value.length;
  }
  get selectionEnd() {
    return this.value.length;
  }
}
for (const prop of BOOLEAN_PROPS) {
  Object.defineProperty(Element.prototype, prop, {
    get() {
      return this.hasAttribute(prop);
    },
    set(v) {
      if (v) this.setAttribute(prop, "");
      else this.removeAttribute(prop);
    },
  });
}

class Document extends Node {
  constructor() {
    super(null);
    this.ownerDocument = null;
    this.nodeType = 9;
    this.nodeName = "#document";
    this.visibilityState = "visible";
    this.activeElement = null;
    this.documentElement = this.createElement("html");
    this.appendChild(this.documentElement);
    this.body = this.createElement("body");
    this.documentElement.appendChild(this.body);
  }
  createElement(tag) {
    return new Element(this, tag);
  }
  createTextNode(text) {
    return new Text(this, text);
  }
}

export function makeEvent(type, init) {
  return {
    type,
    bubbles: type !== "focus" && type !== "blur",
    defaultPrevented: false,
    target: null,
    preventDefault() {
      this.defaultPrevented = true;
    },
    stopPropagation() {
      this._stopped = true;
    },
    ...init,
  };
}

// -- HTML ----------------------------------------------------------------------------------------

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'", apos: "'", nbsp: "\u00a0" };
const decode = (text) => text.replace(/&(#?\w+);/g, (m, name) => ENTITIES[name] ?? m);

function parseHTML(doc, html, parent) {
  const token = /<!--[\s\S]*?-->|<\/([a-zA-Z][\w-]*)\s*>|<([a-zA-Z][\w-]*)((?:\s+[^\s=/>]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?)*)\s*(\/?)>|[^<]+|</g;
  const attr = /([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g;
  const stack = [parent];
  let match;
  while ((match = token.exec(html))) {
    const top = stack[stack.length - 1];
    if (match[0].startsWith("<!--")) continue;
    if (match[1]) {
      const name = match[1].toLowerCase();
      for (let i = stack.length - 1; i > 0; i--) {
        if (stack[i].localName === name) {
          stack.length = i;
          break;
        }
      }
    } else if (match[2]) {
      const el = doc.createElement(match[2]);
      let a;
      attr.lastIndex = 0;
      while ((a = attr.exec(match[3] || ""))) el.setAttribute(a[1].toLowerCase(), decode(a[2] ?? a[3] ?? a[4] ?? ""));
      (top.localName === "template" ? top.content : top).appendChild(el);
      if (!VOID.has(el.localName) && !match[4]) stack.push(el);
    } else if (match[0].trim()) {
      top.appendChild(doc.createTextNode(decode(match[0])));
    }
  }
}

// -- selectors: compound selectors, comma lists and the descendant combinator -------------------

function splitTop(text, separator) {
  const parts = [];
  let depth = 0;
  let quote = null;
  let current = "";
  for (const ch of text) {
    if (quote) {
      if (ch === quote) quote = null;
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === "[" || ch === "(") depth++;
    else if (ch === "]" || ch === ")") depth--;
    if (!quote && depth === 0 && separator.test(ch)) {
      if (current.trim()) parts.push(current.trim());
      current = "";
      continue;
    }
    current += ch;
  }
  if (current.trim()) parts.push(current.trim());
  return parts;
}

function parseCompound(text) {
  const tests = [];
  const re = /^(?:([a-zA-Z][\w-]*|\*)|#([\w-]+)|\.([\w-]+)|\[([\w-]+)(?:([\^$*]?=)\s*(?:"([^"]*)"|'([^']*)'|([^\]\s]+)))?\]|:not\(((?:[^()]|\([^()]*\))+)\)|:checked)/;
  let rest = text;
  while (rest) {
    const m = re.exec(rest);
    if (!m) throw new Error("fake DOM: unsupported selector " + JSON.stringify(text));
    rest = rest.slice(m[0].length);
    if (m[1]) tests.push((el) => m[1] === "*" || el.localName === m[1].toLowerCase());
    else if (m[2]) tests.push((el) => el.id === m[2]);
    else if (m[3]) tests.push((el) => el.classList.contains(m[3]));
    else if (m[4]) {
      const name = m[4];
      const op = m[5];
      const value = m[6] ?? m[7] ?? m[8];
      tests.push((el) => {
        const actual = el.getAttribute(name);
        if (actual === null) return false;
        if (!op) return true;
        if (op === "=") return actual === value;
        if (op === "^=") return actual.startsWith(value);
        if (op === "$=") return actual.endsWith(value);
        return actual.includes(value);
      });
    } else if (m[9]) {
      const inner = parseCompound(m[9].trim());
      tests.push((el) => !inner(el));
    } else tests.push((el) => el.checked === true);
  }
  return (el) => tests.every((t) => t(el));
}

function parseSelector(selector) {
  return splitTop(selector, /,/).map((group) => splitTop(group, /\s/).map(parseCompound));
}

function matchesComplex(el, compounds, scope) {
  if (!compounds[compounds.length - 1](el)) return false;
  let index = compounds.length - 2;
  for (let node = el.parentNode; index >= 0 && node && node !== scope && node.nodeType === 1; node = node.parentNode) {
    if (compounds[index](node)) index--;
  }
  return index < 0;
}

// -- a page, a scripted API, a fake Stripe.js ----------------------------------------------------

/** A document with <div id="payment-container">, installed as the global page. */
export function installPage({ stripeScript = false } = {}) {
  const document = new Document();
  const container = document.createElement("div");
  container.setAttribute("id", "payment-container");
  document.body.appendChild(container);
  if (stripeScript) {
    const script = document.createElement("script");
    script.setAttribute("src", "https://js.stripe.com/v3/");
    document.body.appendChild(script);
  }
  const windowListeners = {};
  const saved = {
    document: globalThis.document,
    addEventListener: globalThis.addEventListener,
    removeEventListener: globalThis.removeEventListener,
    fetch: globalThis.fetch,
    Stripe: globalThis.Stripe,
  };
  globalThis.document = document;
  globalThis.addEventListener = (type, fn) => (windowListeners[type] = windowListeners[type] || []).push(fn);
  globalThis.removeEventListener = (type, fn) => {
    const list = windowListeners[type] || [];
    if (list.includes(fn)) list.splice(list.indexOf(fn), 1);
  };
  return {
    document,
    container,
    restore() {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete globalThis[key];
        else globalThis[key] = value;
      }
    },
  };
}

export const PROFILE = Object.freeze({
  id: "prof_1",
  token: "profile-token-1",
  session_id: "cs_1",
  amount: { value: 4480, currency: "EUR", display: "€44.80" },
  risk: { risk_score: 3, level: "normal" },
  methods: [{ type: "card" }, { type: "klarna" }],
  verification: { cvv: false, avs: false, three_ds: false, biometric: false },
  experiment: null,
  ordering: { policy: "context_rules" },
  ui: { layout: "list", locale: "en" },
});

/** The generated form (as checkoutlab/elements renders it, trimmed): list layout with card
 *  and Klarna, the optional verification steps, the hidden 3-D Secure step. */
export function formHTML({ cvv = false, avs = false } = {}) {
  const field = (id, name, label) =>
    `<div class="cl-field"><label class="cl-label" for="${id}">${label}</label>` +
    `<input class="cl-input" id="${id}" name="${name}" type="text" autocomplete="off" aria-describedby="${id}-error">` +
    `<p class="cl-error" id="${id}-error" data-role="error" data-for="${name}" aria-live="polite"></p></div>`;
  const verification =
    cvv || avs
      ? `<section class="cl-section cl-verification" data-step="verification">` +
        (cvv ? `<div class="cl-step" data-step="cvv">${field("cl-cvv-recheck", "cvv_recheck", "Re-enter CVC")}</div>` : "") +
        (avs
          ? `<fieldset class="cl-fieldset cl-step" data-step="avs">${field("cl-billing-line1", "billing_line1", "Address line 1")}` +
            `<div class="cl-row">${field("cl-billing-postal-code", "billing_postal_code", "Postal code")}` +
            `<div class="cl-field"><select class="cl-select" id="cl-billing-country" name="billing_country"><option value="">Select</option><option value="DE">Germany</option></select>` +
            `<p class="cl-error" data-role="error" data-for="billing_country"></p></div></div></fieldset>`
          : "") +
        `</section>`
      : "";
  return (
    `<div class="cl-root" data-layout="list" data-profile-id="prof_1" lang="en">` +
    `<form class="cl-form" data-role="payment-form" novalidate>` +
    `<fieldset class="cl-methods cl-list"><legend class="cl-legend">Payment method</legend>` +
    `<div class="cl-list-item" data-method="card"><div class="cl-choice">` +
    `<input class="cl-radio" type="radio" name="payment_method" id="cl-method-card" value="card" data-action="select-method" data-method="card" checked>` +
    `<label class="cl-choice-label" for="cl-method-card">Card</label></div>` +
    `<div class="cl-panel" role="group" id="cl-panel-card" data-method="card"><div class="cl-card" data-brands="visa">` +
    field("cl-card-number", "card_number", "Card number") +
    `<div class="cl-row">${field("cl-card-exp", "exp", "Expiry")}${field("cl-card-cvc", "cvc", "CVC")}</div>` +
    field("cl-cardholder-name", "cardholder_name", "Name on card") +
    `</div></div></div>` +
    `<div class="cl-list-item" data-method="klarna"><div class="cl-choice">` +
    `<input class="cl-radio" type="radio" name="payment_method" id="cl-method-klarna" value="klarna" data-action="select-method" data-method="klarna">` +
    `<label class="cl-choice-label" for="cl-method-klarna">Klarna</label></div>` +
    `<div class="cl-panel" role="group" id="cl-panel-klarna" data-method="klarna" hidden><p>Pay later.</p></div></div>` +
    `</fieldset>` +
    verification +
    `<section class="cl-section cl-three-ds" data-step="three_ds" hidden><p class="cl-text">Confirm with your bank.</p>` +
    `<div class="cl-actions"><button type="button" class="cl-button" data-action="three-ds-complete">Complete</button>` +
    `<button type="button" class="cl-button" data-action="three-ds-fail">Fail</button></div>` +
    `<p class="cl-error" data-role="error" data-for="three_ds"></p></section>` +
    `<div class="cl-summary"><button type="submit" class="cl-submit" data-action="submit">Pay €44.80</button></div>` +
    `<p class="cl-error" id="cl-form-error" data-role="error" data-for="form" aria-live="polite"></p>` +
    `</form></div>`
  );
}

const SUCCEEDED = { id: "pay_1", object: "payment", status: "succeeded", card: { brand: "visa", last4: "4242" } };

/**
 * A fetch standing in for the platform: every request is recorded as {path, headers, body,
 * raw}. `confirm` and `challenge` are lists of [status, body] answered in turn (the last one
 * repeats); by default both succeed.
 */
export function fakeApi({ profile = PROFILE, html = formHTML(), confirm = [[200, SUCCEEDED]], challenge = [[200, SUCCEEDED]] } = {}) {
  const calls = [];
  const counters = { confirm: 0, challenge: 0 };
  const next = (list, name) => list[Math.min(counters[name]++, list.length - 1)];
  const fetch = async (url, init) => {
    const path = new URL(url, "https://shop.example").pathname;
    calls.push({ path, headers: { ...init.headers }, body: JSON.parse(init.body), raw: init.body });
    let answer;
    if (path === "/v1/payment_profile") answer = [200, profile];
    else if (path === "/v1/elements") answer = [200, { html, css: ".cl-root{}" }];
    else if (path === "/v1/events") answer = [202, { accepted: JSON.parse(init.body).events.length }];
    else if (path.endsWith("/confirm")) answer = next(confirm, "confirm");
    else if (path.endsWith("/challenge")) answer = next(challenge, "challenge");
    else answer = [404, { error: { type: "invalid_request_error", code: "resource_missing", message: "no route" } }];
    return { status: answer[0], headers: new Map(), text: async () => JSON.stringify(answer[1]) };
  };
  return { fetch, calls, of: (suffix) => calls.filter((c) => c.path.endsWith(suffix)) };
}

/**
 * window.Stripe stand-in. `calls` records [method, ...arguments]; createPaymentMethod answers
 * `result` ({paymentMethod} or {error}); handleNextAction answers `nextAction`. The card
 * Element "mounts" by appending an <iframe> to its target, as Stripe.js does.
 */
export function fakeStripe({ result = { paymentMethod: { id: "pm_1Fake", type: "card" } }, nextAction = { paymentIntent: { id: "pi_1", status: "requires_confirmation" } } } = {}) {
  const calls = [];
  const state = { element: null, handlers: {} };
  function Stripe(key, options) {
    calls.push(["Stripe", key, options]);
    return {
      elements(options) {
        calls.push(["elements", options]);
        return {
          create(type, options) {
            calls.push(["create", type, options]);
            const element = {
              target: null,
              // What the shopper typed stays in Stripe's frame: the widget never sees it.
              secretlyTyped: "4242 4242 4242 4242",
              mount(target) {
                calls.push(["mount", target]);
                if (!target || target.nodeType !== 1) throw new Error("IntegrationError: no element");
                if (target.getRootNode().host) throw new Error("IntegrationError: Elements cannot be mounted in a ShadowRoot. Please mount in the Light DOM.");
                target.appendChild(target.ownerDocument.createElement("iframe"));
                this.target = target;
              },
              on(event, handler) {
                state.handlers[event] = handler;
              },
              clear() {
                calls.push(["clear"]);
              },
              focus() {
                calls.push(["focus"]);
              },
              update(options) {
                calls.push(["update", options]);
              },
            };
            state.element = element;
            return element;
          },
        };
      },
      async createPaymentMethod(data) {
        calls.push(["createPaymentMethod", data]);
        return typeof result === "function" ? result(data) : result;
      },
      async handleNextAction(options) {
        calls.push(["handleNextAction", options]);
        return nextAction;
      },
    };
  }
  return { Stripe, calls, state, named: (name) => calls.filter((c) => c[0] === name) };
}

/** Wait until `condition()` is truthy (the widget's work is promise- and timer-driven). */
export async function until(condition, { timeout = 2000, message = "condition" } = {}) {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeout) throw new Error("timed out waiting for " + message);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The widget's shadow root in the container. */
export function shadowOf(container) {
  const host = container.children.find((c) => c.hasAttribute("data-checkoutlab"));
  return host && host.shadowRoot;
}
