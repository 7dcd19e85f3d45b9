"""Drawing helpers for the book's chapters, one module per chapter (e.g. `labcode.figures.ch1`)."""
