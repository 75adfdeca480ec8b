"""The numerical core: box sizes, metrics, objectives, k-means, evolution, polish and the search.

Tensors in, tensors out; nothing here reads a file, touches an ``nn.Module`` or imports
another layer of the package (the ``import-linter`` contract in ``setup.cfg`` checks it).
Import the modules directly, e.g. ``from autoanchor.core.metrics import anchor_stats``.
"""
