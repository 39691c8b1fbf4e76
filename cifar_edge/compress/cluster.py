"""Weight clustering: every kernel keeps only ``clusters`` distinct values, so the file
compresses well (gzip / TFLite palettes) with the architecture unchanged."""
from __future__ import annotations

from .tfmot_compat import tfmot


def cluster(model, clusters: int):
    """Return the clustering-wrapped model (k-means++ centroids, fine-tuned by fit)."""
    c = tfmot.clustering.keras
    return c.cluster_weights(model, number_of_clusters=clusters,
                             cluster_centroids_init=c.CentroidInitialization.KMEANS_PLUS_PLUS)


def strip(model):
    """The plain Keras model whose kernels hold only the centroid values."""
    return tfmot.clustering.keras.strip_clustering(model)
