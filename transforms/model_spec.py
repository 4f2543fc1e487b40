"""What the pipeline needs to know about a model, read from the model itself.

A TF Hub image module or a user's own SavedModel takes float RGB pixels in [0, 1] at a size
its signature states (or any size), and returns class scores (logits, or probabilities
where a softmax is built in) and, from it or from a twin feature-vector module, an
embedding. The driver reads that once (models.describe) and hands the description on as a
value: to decoding (the size), the engines, the schema (the width) and the rows (the
softmax, the label names).
"""

from typing import NamedTuple, Optional

# How the model's outputs reach the pipeline.
PAIR = 'pair'  # a classification module and its feature-vector twin (TF Hub's layout)
ONE_MODEL = 'one_model'  # one SavedModel returning class scores and an embedding
CLASSIFIER = 'classifier'  # class scores only: rows carry no embedding
FORMS = (PAIR, ONE_MODEL, CLASSIFIER)
LOGITS = 'logits'
PROBABILITIES = 'probabilities'


class ModelSpec(NamedTuple):
  image_size: tuple  # (height, width) of the pixels the model takes
  classes: int
  scores: str  # LOGITS or PROBABILITIES
  embedding_width: Optional[int]  # None: the model gives no embedding
  form: str  # one of FORMS
  # For ONE_MODEL: the names of its two outputs.
  class_output: Optional[str] = None
  embedding_output: Optional[str] = None

  def to_dict(self):
    return {**self._asdict(), 'image_size': list(self.image_size)}

  @classmethod
  def from_dict(cls, recorded):
    return cls(**{**recorded, 'image_size': tuple(recorded['image_size'])})

  def describe(self):
    """One line for people: '224x224 pixels, 1,001 classes (logits), 1,280-wide embedding'."""
    height, width = self.image_size
    embedding = (f'{self.embedding_width:,}-wide embedding' if self.embedding_width
                 else 'no embedding')
    return f'{height}x{width} pixels, {self.classes:,} classes ({self.scores}), {embedding}'


# What every directory labelled before descriptions were recorded was labelled with: the TF
# Hub MobileNet V2 pair.
_BEFORE_DESCRIPTIONS = ModelSpec((224, 224), 1001, LOGITS, 1280, PAIR)


def recorded_spec(identity):
  """The ModelSpec an output directory's identity records."""
  recorded = identity.get('model')
  return ModelSpec.from_dict(recorded) if recorded else _BEFORE_DESCRIPTIONS
