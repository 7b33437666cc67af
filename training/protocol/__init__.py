"""What the app and the training process share: plain-text formats, standard library only.

Nothing in this package writes files (it cannot use ``model_zoo.fileio``); it formats and parses
text, and callers write it atomically. Modules: ``csvsafe`` (R17 escaping, safe CSV reading),
``manifest`` (the frozen training manifest), ``canonical`` (the canonical label CSV).
"""
