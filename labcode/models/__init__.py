"""The three architectures, with builders named like torchvision's.

Each full-size builder is state-dict compatible with torchvision's builder of the same
name, so ImageNet weights load with strict=True. The `*_small` builders are course-scale
variants for 28x28 and 32x32 images.
"""
from labcode.models.alexnet import AlexNet, AlexNet2012, alexnet, alexnet2012, alexnet_small
from labcode.models.efficientnet import (
    EfficientNetV2,
    efficientnet_v2_l,
    efficientnet_v2_m,
    efficientnet_v2_s,
    efficientnet_v2_small,
)
from labcode.models.vit import VisionTransformer, vit_b_16, vit_b_32, vit_l_16, vit_small

__all__ = [
    "AlexNet", "AlexNet2012", "alexnet", "alexnet2012", "alexnet_small",
    "EfficientNetV2", "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
    "efficientnet_v2_small", "VisionTransformer", "vit_b_16", "vit_b_32", "vit_l_16",
    "vit_small",
]
