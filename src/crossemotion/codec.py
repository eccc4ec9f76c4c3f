"""The one image codec: JPEG encode/decode, image loading, tensor layout, normalisation.

Decoding and encoding go through OpenCV's libjpeg-turbo. Two paths stay
apart on purpose, because their numbers differ and every trained checkpoint
and stored shard depends on the one it was made with:

- the video frames of the clips shards are encoded from YUV planes by
  ``simplejpeg`` in ``crossemotion.ingest.video.reader.to_jpeg`` (no RGB round trip;
  the decode workers load neither OpenCV nor torch);
- the fusion model's faces go through PIL (``pil_face_tensor``): its decoder
  and bicubic resize give other pixels than ``decode_jpeg`` + ``to_uint8_chw``,
  and the fusion checkpoints were trained on PIL's.

torch is imported inside the tensor functions: the data stages import this
module for JPEG work alone and should not pay for torch.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

# what torchvision's pretrained weights expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> HxWx3 RGB uint8; raises ValueError on undecodable data."""
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("undecodable JPEG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_jpeg(image: np.ndarray, quality: int = 90, *, bgr: bool = False) -> bytes:
    """HxWx3 uint8 (RGB, or BGR as OpenCV reads files with ``bgr``) -> JPEG bytes.

    OpenCV's encoder (4:2:0 at these qualities): the faces shards were written
    with it. Raises RuntimeError when encoding fails.
    """
    pixels = image if bgr else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def read_image(path: str | Path, *, bgr: bool = False) -> np.ndarray | None:
    """An image file (any format OpenCV reads) -> RGB (BGR with ``bgr``) uint8,
    None when it is empty or does not decode; OSError when it cannot be read."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None or bgr:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_image(source: str | Path | bytes | np.ndarray) -> np.ndarray:
    """An image given as a path, encoded bytes or an RGB array -> RGB uint8."""
    if isinstance(source, np.ndarray):
        return source
    if isinstance(source, bytes | bytearray):
        return decode_jpeg(bytes(source))
    try:
        img = read_image(source)
    except OSError as exc:
        raise ValueError(f"cannot read image {source}") from exc
    if img is None:
        raise ValueError(f"cannot read image {source}")
    return img


def to_uint8_chw(img: np.ndarray, size: int) -> Tensor:
    """RGB HxWx3 -> uint8 [3, size, size] (area interpolation when shrinking)."""
    import torch

    if img.shape[0] != size or img.shape[1] != size:
        shrink = img.shape[0] > size or img.shape[1] > size
        img = cv2.resize(
            img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()


def normalize(images: Tensor) -> Tensor:
    """uint8 [..., 3, H, W] -> float, ImageNet statistics (what torchvision weights expect)."""
    import torch

    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    scale = 1.0 / (255.0 * std)
    shift = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) / std
    # (x / 255 - mean) / std as one multiply-subtract on a single new tensor
    return images.float().mul_(scale).sub_(shift)


def pil_face_tensor(data: bytes | np.ndarray, size: int) -> Tensor:
    """JPEG bytes, or an RGB uint8 array (a crop served without a JPEG round trip)
    -> normalized float [3, size, size] by PIL (decoder, bicubic resize), the
    fusion model's path (see the module docstring)."""
    import torch
    from PIL import Image

    if isinstance(data, np.ndarray):
        rgb = Image.fromarray(np.ascontiguousarray(data[..., :3], dtype=np.uint8))
        rgb = rgb.resize((size, size))
    else:
        with Image.open(io.BytesIO(data)) as img:
            rgb = img.convert("RGB").resize((size, size))
    arr = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(list(IMAGENET_MEAN)).view(3, 1, 1)
    std = torch.tensor(list(IMAGENET_STD)).view(3, 1, 1)
    # a subtract then a divide, not normalize()'s multiply-subtract: other float roundings
    return (arr - mean) / std
