"""Stand-ins for what a Colab student's notebook reaches over the network.

`environment`: a virtual environment with Colab's package versions, a fake `google.colab`
and a git repository of this working tree to install labcode from. `downloads`: a
CIFAR-10 archive in the real format served over HTTP on 127.0.0.1, and torchvision's
pretrained-weight files (random values) in torch hub's cache.
"""
