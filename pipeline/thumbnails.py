"""Small JPEG thumbnails of images, as data: URIs to inline in a page, read through the
same filesystem layer and limits as the pipeline."""

import base64
import concurrent.futures
import io

from PIL import Image

from transforms.decode import open_upright
from transforms.read import RetryPolicy, read_image_bytes

THUMBNAIL_SIDE = 160
_READERS = 8  # a report's ~100 images come from a bucket as fast as from a disk


def thumbnail(uri, side=THUMBNAIL_SIDE):
  """A data: URI of the image scaled to fit side x side, or None where it cannot be read
  or decoded any more."""
  try:
    image, _ = open_upright(read_image_bytes(uri, retry=RetryPolicy(max_attempts=2)),
                            min_side=side)
    image.thumbnail((side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, 'JPEG', quality=80)
  except Exception:  # pylint: disable=broad-except
    return None  # moved or deleted since it was labelled: the page shows a placeholder
  return 'data:image/jpeg;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


def thumbnails(uris):
  """{uri: data URI or None} for every distinct uri."""
  distinct = list(dict.fromkeys(uris))
  with concurrent.futures.ThreadPoolExecutor(_READERS) as pool:
    return dict(zip(distinct, pool.map(thumbnail, distinct)))
