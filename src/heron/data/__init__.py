"""Data: reading images and labelled datasets from disk, and dataset metadata."""

from heron.data.folders import DataSplits, discover, split_stratified
from heron.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    find_images,
    is_image_file,
    load_image,
    try_load_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "DataSplits",
    "discover",
    "find_images",
    "is_image_file",
    "load_image",
    "split_stratified",
    "try_load_image",
]
