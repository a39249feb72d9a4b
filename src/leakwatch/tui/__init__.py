"""The incident console (Textual). The only package that imports Textual: ``leakwatch scan``
and the other headless commands never load it (tests/test_tui_app.py checks).

Build the app with :func:`leakwatch.tui.app.make_app`.
"""
