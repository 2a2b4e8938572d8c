"""Redis adapters: the view cache (``cache``). Needs the ``redis`` extra."""
