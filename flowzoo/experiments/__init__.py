"""The built-in experiments of ``flowzoo train NAME``: one module per name, each with
``get_config() -> dict``. Shipped inside the package, so a regular (non-editable) install
finds them from any directory; ``flowzoo list`` names them. Some also run a comparison when
executed (``python -m flowzoo.experiments.fm_moons``)."""
