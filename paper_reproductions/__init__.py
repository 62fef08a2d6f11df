"""Paper reproductions: `python -m paper_reproductions <slug> [--quick] [--out DIR]`."""
