"""The built-in experiments of ``flowzoo train NAME``: one module per name, each with
``get_config() -> dict``. The wheel carries this folder as ``flowzoo/experiments/``, so a
regular (non-editable) install finds them from any directory; ``flowzoo list`` names them.
Some also run a comparison when executed from a checkout (``python experiments/fm_moons.py``).
An experiment that starts from another one's config loads it with
:func:`flowzoo.zoo.builtin_experiment`."""
