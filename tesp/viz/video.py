"""Episodes as videos: an MP4 of every frame and a small GIF preview, frames captioned."""

from __future__ import annotations

from pathlib import Path

import numpy as np

VIDEO_FPS = 20  # the envs' control rate: 0.05 s per step
GIF_WIDTH = 400  # pixels at most: the GIF is the preview; the MP4 keeps every frame at full size
GIF_FPS = 10


def write_video(frames: list[np.ndarray], stem: Path, fps: float = VIDEO_FPS) -> list[Path]:
    """``stem.mp4`` (every frame) and ``stem.gif``, a preview at most :data:`GIF_WIDTH` wide
    and :data:`GIF_FPS` frames per second, so that a 10 s episode is a few hundred kB, not MB."""
    import imageio.v3 as iio

    mp4, gif = stem.with_suffix(".mp4"), stem.with_suffix(".gif")
    video = np.stack(frames)
    iio.imwrite(mp4, video, fps=fps, codec="libx264", macro_block_size=1)
    every = max(1, round(fps / GIF_FPS))
    shrink = max(1, -(-video.shape[2] // GIF_WIDTH))
    iio.imwrite(gif, video[::every, ::shrink, ::shrink], duration=1000 * every / fps, loop=0)
    return [mp4, gif]


def with_caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with ``text`` written in its bottom-left corner on a white band."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((8, image.height - 20), text)
    draw.rectangle((left - 3, top - 3, right + 3, bottom + 3), fill=(255, 255, 255))
    draw.text((8, image.height - 20), text, fill=(0, 0, 0))
    return np.asarray(image)
