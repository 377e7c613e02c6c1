"""Analyses: plain result objects (numpy arrays + labels); `.show()` returns a widget."""
