"""Neural style transfer (Gatys et al. 2015): the content of one image in the style of others.

The course notes' recipe: a fixed pretrained ConvNet, a content cost on one
middle layer, a Gram-matrix style cost over several layers, and gradient
descent on the pixels of the generated image G:

    J(G) = alpha J_C(C, G) + beta J_S(S, G)

- `costs`: the formulas (content cost, Gram matrix, per-layer and total
  style cost, total variation), pure functions;
- `extractor`: a zoo backbone cut after the deepest layer used, frozen;
- `images`: reading, sizing, luminance-only colour preservation, saving;
- `optimise`: the targets (once) and the loop (L-BFGS or Adam, coarse to fine).

    from heron.tasks.style import StyleConfig, transfer_style
    result = transfer_style("photo.jpg", "painting.jpg", StyleConfig(size=384, steps=150))
    result.save("out.png")
"""

from heron.tasks.style.costs import content_cost, gram_matrix, layer_style_cost, style_cost, total_variation
from heron.tasks.style.extractor import (
    DEFAULT_LAYERS, FeatureExtractor, LayerChoice, build_extractor, default_layers, layer_names,
)
from heron.tasks.style.optimise import StyleConfig, StyleResult, StyleTargets, compute_targets, evaluate, transfer_style

__all__ = [
    "DEFAULT_LAYERS",
    "FeatureExtractor",
    "LayerChoice",
    "StyleConfig",
    "StyleResult",
    "StyleTargets",
    "build_extractor",
    "compute_targets",
    "content_cost",
    "default_layers",
    "evaluate",
    "gram_matrix",
    "layer_names",
    "layer_style_cost",
    "style_cost",
    "total_variation",
    "transfer_style",
]
