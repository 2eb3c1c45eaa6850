"""Textual-free core shared by the headless CLI and the TUI.

Nothing under this package may import textual or rich (tests/test_core_boundary.py guards it).
"""
