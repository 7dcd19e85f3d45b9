"""Interactive explorers for the book's chapters, one module per widget (e.g. `labcode.widgets.conv`)."""
