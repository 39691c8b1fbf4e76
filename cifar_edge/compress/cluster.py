"""Weight clustering: every kernel keeps only ``clusters`` distinct values, so the file
compresses well (gzip / TFLite palettes) with the architecture unchanged."""
from __future__ import annotations

from .._tf import keras
from ..errors import CifarEdgeError
from .measure import KERNEL_LAYERS
from ..models.tfmot_compat import tfmot


def cluster(model, clusters: int):
    """Return the clustering-wrapped model (k-means++ centroids, fine-tuned by fit)."""
    c = tfmot.clustering.keras
    params = dict(number_of_clusters=clusters, cluster_centroids_init=c.CentroidInitialization.KMEANS_PLUS_PLUS)
    try:
        return c.cluster_weights(model, **params)
    except ValueError:
        pass     # a layer tfmot does not know (ConvNeXt's LayerScale): cluster the kernels only
    wrap = lambda layer: c.cluster_weights(layer, **params) if isinstance(layer, KERNEL_LAYERS) else layer  # noqa: E731
    try:
        return keras.models.clone_model(model, clone_function=wrap)
    except ValueError as e:
        raise CifarEdgeError(f"tfmot cannot cluster this model ({str(e).splitlines()[0][-160:]}); use --prune or "
                             "--qat instead") from None


def strip(model):
    """The plain Keras model whose kernels hold only the centroid values."""
    return tfmot.clustering.keras.strip_clustering(model)
