"""Griffe extension: neutralise the Sphinx roles in flowzoo's docstrings before parsing.

flowzoo's docstrings are Google style but use Sphinx roles for cross-references
(``:func:`stack```, ``:class:`~flowzoo.distributions.Distribution```). Left alone, the
role's colon confuses the Google parser (a ``Returns:`` line "A :class:`Bijector` on ..."
is split at the colon into a type and a description) and the role prints literally.
This extension rewrites each role to ``<code class="fz-xref">TARGET</code>`` before the
docstring is parsed; ``docs/hooks.py`` turns those into links on the rendered pages.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):`(~?[\w.]+)`")


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(
                lambda m: f'<code class="fz-xref">{m[1]}</code>', obj.docstring.value
            )
