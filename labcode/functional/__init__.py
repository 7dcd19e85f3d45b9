"""labcode's layers as plain functions, written from scratch with tensor operations.

Same names, arguments and defaults as their `torch.nn.functional` namesakes (plus a
keyword-only `check=True`: labcode's layers pass False once they have checked their
input), and tested equal to them in output and gradient. None of them calls torch's own
convolution, pooling, linear or attention kernels.

    conv.py       conv2d, conv2d_loop (the definition as loops, for reading)
    pool.py       max_pool2d, avg_pool2d
    basic.py      linear, relu
    attention.py  scaled_dot_product_attention, attention_weights
    sizes.py      conv_output_size, padding_amount (convolution arithmetic)
"""
from labcode.functional.attention import attention_weights, scaled_dot_product_attention
from labcode.functional.basic import linear, relu
from labcode.functional.conv import conv2d, conv2d_loop
from labcode.functional.pool import avg_pool2d, max_pool2d
from labcode.functional.sizes import PADDING_MODES, conv_output_size, padding_amount

__all__ = [
    "conv2d", "conv2d_loop", "max_pool2d", "avg_pool2d", "linear", "relu",
    "scaled_dot_product_attention", "attention_weights", "conv_output_size",
    "padding_amount", "PADDING_MODES",
]
