"""What an upload's bytes are: the declared type checked against the content's magic
bytes, and for images their size and a thumbnail, decoded with Pillow on a thread
with a guard against decompression bombs.

A thumbnail is made from the decoded pixels and saved anew, so nothing of the
original's metadata (EXIF, and with it GPS positions) is in it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

# Images shown inline (everything else is downloaded as an attachment), and the magic
# bytes each starts with.
SAFE_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")
THUMBNAIL_SIDE = 320
# Decoding more pixels than this is refused: a small file can claim a huge image.
MAX_PIXELS = 40_000_000
SNIFF_BYTES = 16


def matches(content_type: str, head: bytes) -> bool:
    """Whether bytes starting with `head` can be of the declared type. The images
    shown inline must be what they say; every other type is taken as declared, since
    it is only ever offered for download."""
    if content_type == "image/png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if content_type == "image/jpeg":
        return head.startswith(b"\xff\xd8\xff")
    if content_type == "image/gif":
        return head.startswith((b"GIF87a", b"GIF89a"))
    if content_type == "image/webp":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return True


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    # PNG bytes of the thumbnail; None when the image is too large to decode.
    thumbnail: bytes | None


def picture(data: bytes) -> Picture | None:
    """The image's size and a thumbnail; None when Pillow cannot read it at all.
    Blocking (decoding): call it on a thread."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    return Picture(width, height, None)
                image.load()
                return Picture(width, height, _thumbnail(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None
    except (OSError, ValueError, SyntaxError):
        return None


def _thumbnail(image: Image.Image) -> bytes:
    upright = ImageOps.exif_transpose(image)
    upright.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    if upright.mode not in ("RGB", "RGBA", "L", "LA"):
        upright = upright.convert("RGBA")
    out = io.BytesIO()
    upright.save(out, format="PNG", optimize=True)
    return out.getvalue()
