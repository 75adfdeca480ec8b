"""Files and formats: dataset readers, darknet cfgs, model yamls, config writers and the shipped configs.

This layer turns what users have on disk into :class:`~autoanchor.core.boxes.BoxSizes` and
anchors, and writes results back atomically; it uses :mod:`autoanchor.core` and
:mod:`autoanchor.grid`, never :mod:`autoanchor.training` or :mod:`autoanchor.cli`.
"""
