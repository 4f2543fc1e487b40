"""What every converted engine shares: the pixels it accepts, and which of its outputs is
the scores and which the embedding (told apart by their widths)."""

import numpy as np


def checked_pixels(pixels, spec):
  """`pixels` as contiguous uint8, or ValueError where they are not [n, height, width, 3] at
  the model's size."""
  pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
  shape = (*spec.image_size, 3)
  if pixels.ndim != 4 or pixels.shape[1:] != shape:
    raise ValueError(f'expected pixels of shape [n, {", ".join(map(str, shape))}], '
                     f'got {pixels.shape}')
  return pixels


def output_positions(widths, spec):
  """(position of the scores, position of the embedding or None) among outputs of `widths`."""
  if not spec.embedding_width:
    if len(widths) != 1:
      raise ValueError(f'expected one output, the scores; the model has {len(widths)}')
    return 0, None
  if spec.embedding_width == spec.classes or sorted(widths) != sorted(
      [spec.classes, spec.embedding_width]):
    raise ValueError(f'cannot tell the scores from the embedding among outputs of widths '
                     f'{widths} (classes: {spec.classes}, embedding: {spec.embedding_width})')
  return widths.index(spec.classes), widths.index(spec.embedding_width)
