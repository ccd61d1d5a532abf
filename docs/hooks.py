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


_SAMPLER_TABLE = "<!-- sampler-table -->"


def sampler_table(budget: int = 64) -> str:
    """A Markdown table of what every registered sampler states about itself (kind, needed
    ``Problem`` fields, adaptivity, the steps a budget buys and their NFE), read from
    ``flowzoo.samplers.SAMPLERS`` with each sampler's default options."""
    import flowzoo.zoo  # noqa: F401  (registers the flow samplers)
    from flowzoo.samplers import SAMPLERS

    rows = [
        f"| sampler | kind | needs | `num_steps` for {budget} NFE | NFE of those steps |",
        "|---|---|---|---|---|",
    ]
    for name, spec in sorted(SAMPLERS.items()):
        needs = ", ".join(" or ".join(f"`{field}`" for field in alts) for alts in spec.needs)
        if spec.adaptive:
            steps, nfe = "adaptive (`rtol`, `atol`)", "reported after the solve"
        else:
            steps = spec.steps_for(budget)
            nfe = spec.nfe(steps)
        rows.append(f"| `{name}` | {spec.kind} | {needs} | {steps} | {nfe} |")
    return "\n".join(rows)


def on_page_markdown(markdown, page, **kwargs):
    """Replace the ``<!-- sampler-table -->`` marker (``samplers.md``) by :func:`sampler_table`."""
    if _SAMPLER_TABLE in markdown:
        markdown = markdown.replace(_SAMPLER_TABLE, sampler_table())
    return markdown


def on_page_content(html, page, **kwargs):
    src = page.file.src_uri
    module = "flowzoo." + src[len("api/") : -len(".md")] if src.startswith("api/") else None

    def link(match: re.Match) -> str:
        tilde, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if tilde else target
        ident = target if ("." in target or module is None) else f"{module}.{target}"
        return f'<autoref identifier="{ident}" optional><code>{shown}</code></autoref>'

    return _XREF.sub(link, html)
