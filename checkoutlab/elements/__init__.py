"""Dynamic element generator: turns a PaymentProfile into the checkout form's HTML and CSS.

Rendering happens server-side so the widget only has to wire behaviour: the markup is built from
autoescaped jinja2 templates, carries no script, inline style or remote URL (the merchant page can
keep a strict CSP), and is themed purely through CSS custom properties scoped under ``.cl-root``.
"""

from checkoutlab.elements.render import RenderedElements, render_elements

__all__ = ["RenderedElements", "render_elements"]
