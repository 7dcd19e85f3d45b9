"""The pages a jb-book _toc.yml lists, shared by the book and browser tests."""
from __future__ import annotations


def toc_files(toc: dict) -> list[str]:
    """Every `file:` entry of a jb-book _toc.yml, root first, without extension."""
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return files
