"""MkDocs hook: turn the cross-references of flowzoo's docstrings into links.

``docs/griffe_roles.py`` rewrites Sphinx roles such as ``:func:`stack``` to
``<code class="fz-xref">stack</code>``; this hook replaces each of those with an optional
autorefs reference, so it becomes a link when the target is documented on some API page
and plain code otherwise. Unqualified names are looked up in the module of the API page
(``api/bijectors.md`` -> ``flowzoo.bijectors``); a leading ``~`` shows only the last part.
"""

from __future__ import annotations

import re

_XREF = re.compile(r'<code class="fz-xref">(~?)([\w.]+)</code>')


def on_page_content(html, page, **kwargs):
    src = page.file.src_uri
    module = "flowzoo." + src[len("api/") : -len(".md")] if src.startswith("api/") else None

    def link(match: re.Match) -> str:
        tilde, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if tilde else target
        ident = target if ("." in target or module is None) else f"{module}.{target}"
        return f'<autoref identifier="{ident}" optional><code>{shown}</code></autoref>'

    return _XREF.sub(link, html)
