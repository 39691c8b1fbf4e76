"""Data: sources, splits, augmentation and tf.data pipelines."""
from .augment import AugmentConfig
from .dataset import Dataset
from .pipeline import Normalization, make_dataset, prepare_images
from .sources import NAMED_SOURCES, OFFICIAL_MD5, load_dataset, load_path
from .splits import limit_images, stratified_kfold, stratified_split, stratified_subset, train_val
from .synthetic import make_synthetic

__all__ = ["AugmentConfig", "Dataset", "Normalization", "make_dataset", "prepare_images", "NAMED_SOURCES",
           "OFFICIAL_MD5", "load_dataset", "load_path", "stratified_kfold", "stratified_split", "stratified_subset", "limit_images", "train_val", "make_synthetic"]
