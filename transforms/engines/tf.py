"""tf: the model on TensorFlow itself (model.py), the reference every other engine is
checked against and the one they fall back to."""

from importlib import metadata

from transforms.engines import Engine, register


register(Engine('tf', 'fp32', lambda source: source.tf_model(), in_auto=False,
                version=lambda: f'tensorflow=={metadata.version("tensorflow")}'))
