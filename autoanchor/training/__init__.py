"""Models and training scripts: the hook (``check_anchors``), its options and report, the head families.

The only layer that touches an ``nn.Module``. It uses :mod:`autoanchor.core`,
:mod:`autoanchor.grid` and :mod:`autoanchor.io`; only :mod:`autoanchor.cli` sits above it.
"""
