"""The papers' numbers that the tests hold the models to, written down once.

Source: the course's reference facts (shared/FACTS.md), which cite the papers and the
torchvision 0.29.1 measurements. The models keep their own copy of each table as
configuration (labcode.models.efficientnet's `Stage` rows, labcode.models.vit's `TABLE_1`);
a test that compares the two fails when either drifts. Tests that only need a model's
shape read it from the model's configuration, not from here.
"""

# -- EfficientNetV2 (Tan & Le, ICML 2021, arXiv 2104.00298), table 4: EfficientNetV2-S ------

# (block, expand ratio, kernel, stride, in channels, out channels, layers): the released
# model's numbers (stage 6 has 256 channels; the first arXiv version printed 272).
EFFICIENTNET_V2_S_STAGES = [
    ("FusedMBConv", 1, 3, 1, 24, 24, 2),
    ("FusedMBConv", 4, 3, 2, 24, 48, 4),
    ("FusedMBConv", 4, 3, 2, 48, 64, 4),
    ("MBConv", 4, 3, 2, 64, 128, 6),
    ("MBConv", 6, 3, 1, 128, 160, 9),
    ("MBConv", 6, 3, 2, 160, 256, 15),
]
EFFICIENTNET_V2_S_SE_RATIOS = [0, 0, 0, 0.25, 0.25, 0.25]  # SE on the MBConv stages only
EFFICIENTNET_V2_S_STEM = dict(operator="Conv3x3", stride=2, channels=24)
EFFICIENTNET_V2_HEAD_CHANNELS = 1280  # S, M and L
# What arXiv 2104.00298v1 printed for S: stage 6 channels, head channels.
EFFICIENTNET_V2_S_ARXIV_V1 = (272, 1792)

# Parameters with 1000 classes (torchvision 0.29.1) and multiply-adds of S at 384x384.
EFFICIENTNET_V2_PARAMS = {"s": 21_458_488, "m": 54_139_356, "l": 118_515_272}
EFFICIENTNET_V2_S_GMACS_384 = 8.37

# -- ViT (Dosovitskiy et al., ICLR 2021, arXiv 2010.11929), table 1 ------------------------

# (model, layers, hidden size D, MLP size, heads)
VIT_TABLE_1 = [
    ("ViT-Base", 12, 768, 3072, 12),
    ("ViT-Large", 24, 1024, 4096, 16),
    ("ViT-Huge", 32, 1280, 5120, 16),
]
# Parameters with 1000 classes (torchvision 0.29.1).
VIT_PARAMS = {"vit_b_16": 86_567_656, "vit_b_32": 88_224_232, "vit_l_16": 304_326_632}
VIT_B_16_GMACS_224 = 17.56  # with the attention products (torchvision's published figure)

# -- AlexNet ------------------------------------------------------------------------------

ALEXNET_PARAMS = 61_100_840  # torchvision's single-tower variant
ALEXNET_2012_PARAMS = 60_965_224  # as in the 2012 paper: 227 px, two towers, LRN
