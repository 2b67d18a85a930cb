"""A sticker's picture: its emoji glyph, drawn as a small SVG document (sans-I/O).

The glyph is the picture; the SVG frames it on a rounded tile with its title for accessibility,
so any browser or image viewer with an emoji font renders it.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from sticker_search.catalog import Sticker

SVG_MEDIA_TYPE = "image/svg+xml"
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"
SVG_SIZE = 128


def render_svg(sticker: Sticker, lang: str | None = None) -> bytes:
    """The SVG document for ``sticker`` (UTF-8), titled in ``lang`` when available."""
    title = escape(sticker.title(lang))
    glyph = escape(sticker.glyph)
    half = SVG_SIZE // 2
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_SIZE}" height="{SVG_SIZE}" '
        f'viewBox="0 0 {SVG_SIZE} {SVG_SIZE}" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        f'<rect x="4" y="4" width="{SVG_SIZE - 8}" height="{SVG_SIZE - 8}" rx="24" '
        f'fill="#f4f1ff" stroke="#d9d2ff" stroke-width="2"/>'
        f'<text x="{half}" y="{half}" font-size="80" text-anchor="middle" '
        f'dominant-baseline="central" font-family="Noto Color Emoji, Apple Color Emoji, '
        f'Segoe UI Emoji, sans-serif">{glyph}</text></svg>'
    ).encode()
