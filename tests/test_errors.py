"""Bad input to labcode.functional and labcode.layers: a TypeError or ValueError whose
message names what was expected and what came."""
from __future__ import annotations

import pytest
import torch

import labcode.functional as LF
from labcode.layers import AvgPool2d, Conv2d, Linear, MaxPool2d, set_backend

X = torch.randn(2, 4, 8, 8)
W = torch.randn(6, 4, 3, 3)


@pytest.mark.parametrize("call, error, words", [
    # wrong rank
    (lambda: LF.conv2d(torch.randn(4, 8, 8), W), ValueError, ["4-D", "(4, 8, 8)"]),
    (lambda: LF.conv2d(X, torch.randn(6, 4, 3)), ValueError, ["4-D", "(6, 4, 3)"]),
    (lambda: LF.max_pool2d(torch.randn(8, 8), 2), ValueError, ["4-D", "(8, 8)"]),
    (lambda: LF.avg_pool2d(torch.randn(1, 2, 3, 8, 8), 2), ValueError, ["4-D", "(1, 2, 3, 8, 8)"]),
    # channels
    (lambda: LF.conv2d(torch.randn(2, 3, 8, 8), W), ValueError, ["4 input channels", "got 3"]),
    (lambda: LF.conv2d(X, torch.randn(6, 2, 3, 3), groups=3), ValueError, ["groups=3", "(4)", "(6)"]),
    (lambda: LF.conv2d(X, torch.randn(6, 4, 3, 3), groups=2), ValueError, ["8 input channels", "got 4"]),
    (lambda: LF.conv2d(X, torch.randn(5, 2, 3, 3), groups=2), ValueError, ["groups=2", "(5)"]),
    (lambda: LF.conv2d(X, W, groups=0), ValueError, ["groups", "at least 1", "0"]),
    (lambda: LF.conv2d(X, W, torch.randn(5)), ValueError, ["(6,)", "(5,)"]),
    # sizes
    (lambda: LF.conv2d(torch.randn(1, 4, 2, 2), W), ValueError, ["(3, 3)", "larger", "(2, 2)"]),
    (lambda: LF.conv2d(torch.randn(1, 4, 5, 5), W, dilation=3), ValueError, ["(7, 7)", "(5, 5)"]),
    (lambda: LF.max_pool2d(torch.randn(1, 1, 2, 2), 3, padding=0), ValueError, ["(3, 3)", "(2, 2)"]),
    (lambda: LF.max_pool2d(torch.randn(1, 1, 2, 2), 3, 1, ceil_mode=True), ValueError,
     ["(3, 3)", "(2, 2)", "even with ceil_mode"]),
    (lambda: LF.max_pool2d(X, 3, padding=2), ValueError, ["at most half", "(1, 1)", "(2, 2)"]),
    (lambda: LF.avg_pool2d(X, 2, padding=(0, 2)), ValueError, ["at most half", "(0, 2)"]),
    # stride, kernel, dilation below 1
    (lambda: LF.conv2d(X, W, stride=0), ValueError, ["stride", "at least 1", "0"]),
    (lambda: LF.conv2d(X, W, stride=(1, -1)), ValueError, ["stride", "at least 1", "(1, -1)"]),
    (lambda: LF.conv2d(X, W, dilation=0), ValueError, ["dilation", "at least 1", "0"]),
    (lambda: LF.conv2d(X, torch.randn(6, 4, 0, 3)), ValueError, ["kernel size", "at least 1", "(0, 3)"]),
    (lambda: LF.conv2d(X, W, padding=-1), ValueError, ["padding", "at least 0", "-1"]),
    (lambda: LF.max_pool2d(X, 0), ValueError, ["kernel_size", "at least 1", "0"]),
    (lambda: LF.avg_pool2d(X, 2, stride=0), ValueError, ["stride", "at least 1", "0"]),
    (lambda: LF.conv_output_size(10, 0), ValueError, ["kernel_size", "at least 1", "0"]),
    (lambda: LF.conv_output_size(10, 3, stride=0), ValueError, ["stride", "at least 1", "0"]),
    (lambda: LF.conv_output_size(2, 5), ValueError, ["covers 5", "2 + 0 + 0"]),
    # padding modes
    (lambda: LF.conv2d(X, W, padding="half"), ValueError, ["'valid'", "'same'", "'full'", "'half'"]),
    (lambda: LF.padding_amount("half", 3), ValueError, ["'valid'", "'half'"]),
    (lambda: LF.conv2d(X, W, stride=2, padding="same"), ValueError, ["'same'", "stride 1", "(2, 2)"]),
    (lambda: LF.conv_output_size(10, 3, 2, "same"), ValueError, ["'same'", "stride 1", "stride 2"]),
    (lambda: Conv2d(4, 6, 3, stride=2, padding="same"), ValueError, ["'same'", "stride 1", "stride 2"]),
    (lambda: Conv2d(4, 6, 3, padding="half"), ValueError, ["'full'", "'half'"]),
    # attention
    (lambda: LF.scaled_dot_product_attention(torch.randn(2, 5, 8), torch.randn(2, 6, 7), torch.randn(2, 6, 3)),
     ValueError, ["same width", "width 8", "width 7"]),
    (lambda: LF.attention_weights(torch.randn(5, 8), torch.randn(6, 4)), ValueError, ["width 8", "width 4"]),
    (lambda: LF.scaled_dot_product_attention(torch.randn(5, 8), torch.randn(6, 8), torch.randn(7, 3)),
     ValueError, ["(6)", "(7, 3)"]),
    (lambda: LF.attention_weights(torch.randn(8), torch.randn(6, 8)), ValueError, ["2-D", "(8,)"]),
    # linear
    (lambda: LF.linear(torch.randn(3, 5), torch.randn(4, 6)), ValueError, ["in_features = 6", "(3, 5)"]),
    (lambda: LF.linear(torch.randn(3, 6), torch.randn(4, 6), torch.randn(3)), ValueError, ["(4,)", "(3,)"]),
    # non-tensors
    (lambda: LF.conv2d([[1.0]], W), TypeError, ["input", "tensor", "list"]),
    (lambda: LF.conv2d(X, W.numpy()), TypeError, ["weight", "tensor", "ndarray"]),
    (lambda: LF.conv2d(X, W, bias=[0.0] * 6), TypeError, ["bias", "tensor or None", "list"]),
    (lambda: LF.conv2d(X, W, stride=1.5), TypeError, ["stride", "int", "1.5"]),
    (lambda: LF.conv2d(X.long(), W), TypeError, ["floating-point", "torch.int64"]),
    (lambda: LF.max_pool2d(X.numpy(), 2), TypeError, ["input", "tensor", "ndarray"]),
    (lambda: LF.avg_pool2d("image", 2), TypeError, ["input", "tensor", "str"]),
    (lambda: LF.linear(3.0, torch.randn(4, 6)), TypeError, ["input", "tensor", "float"]),
    (lambda: LF.relu([1.0]), TypeError, ["input", "tensor", "list"]),
    (lambda: LF.scaled_dot_product_attention(torch.randn(5, 8), None, torch.randn(5, 8)), TypeError,
     ["key", "tensor", "NoneType"]),
    (lambda: LF.conv2d_loop(X, torch.randn(6, 3, 3, 3)), ValueError, ["3 input channels", "got 4"]),
    # layers
    (lambda: Conv2d(3, 8, 3)(X), ValueError, ["3 channels", "got 4 channels", "(2, 4, 8, 8)"]),
    (lambda: Conv2d(4, 8, 3)(torch.randn(4, 8, 8)), ValueError, ["4-D", "(4, 8, 8)"]),
    (lambda: Conv2d(4, 6, 3, groups=4), ValueError, ["groups=4", "(6)"]),
    (lambda: Linear(5, 3)(torch.randn(2, 4)), ValueError, ["(..., 5)", "(2, 4)"]),
    (lambda: MaxPool2d(2)(torch.randn(8, 8)), ValueError, ["4-D", "(8, 8)"]),
    (lambda: AvgPool2d(3, padding=2), ValueError, ["at most half", "(1, 1)"]),
    (lambda: MaxPool2d(2)([1.0]), TypeError, ["input", "tensor", "list"]),
    # layer arguments, refused when the layer is built rather than later by torch
    (lambda: Conv2d(4, 6, 3, stride=0), ValueError, ["Conv2d", "stride", "at least 1", "0"]),
    (lambda: Conv2d(4, 6, 3, stride=(1, 0)), ValueError, ["Conv2d", "stride", "at least 1", "(1, 0)"]),
    (lambda: Conv2d(4, 6, 3, padding=-1), ValueError, ["Conv2d", "padding", "at least 0", "-1"]),
    (lambda: Conv2d(4, 6, 3, dilation=0), ValueError, ["Conv2d", "dilation", "at least 1", "0"]),
    (lambda: Conv2d(4, 6, 0), ValueError, ["Conv2d", "kernel_size", "at least 1", "0"]),
    (lambda: Conv2d(4, 6, 2.5), TypeError, ["Conv2d", "kernel_size", "int", "2.5"]),
    (lambda: Conv2d("4", 6, 3), TypeError, ["Conv2d", "in_channels", "int", "'4'"]),
    (lambda: Conv2d(4, 0, 3), ValueError, ["Conv2d", "out_channels", "at least 1", "0"]),
    (lambda: Linear(-1, 3), ValueError, ["Linear", "in_features", "at least 1", "-1"]),
    (lambda: Linear(3, -1), ValueError, ["Linear", "out_features", "at least 1", "-1"]),
    (lambda: Linear(3, 2.0), TypeError, ["Linear", "out_features", "int", "2.0"]),
    (lambda: MaxPool2d(2, stride=0), ValueError, ["MaxPool2d", "stride", "at least 1", "0"]),
    # dtype: uint8 images get a hint to convert them
    (lambda: Conv2d(4, 6, 3)(X.to(torch.uint8)), TypeError, ["floating-point", "torch.uint8", "images.float() / 255"]),
    (lambda: LF.max_pool2d(X.to(torch.uint8), 2), TypeError, ["floating-point", "torch.uint8", "/ 255"]),
    # dtype: linear's tensors must share one outside autocast, as in torch
    (lambda: LF.linear(torch.randn(3, 6, dtype=torch.float64), torch.randn(4, 6)), TypeError,
     ["linear: input and weight must have the same dtype", "input torch.float64, weight torch.float32"]),
    (lambda: LF.linear(torch.randn(3, 6), torch.randn(4, 6), torch.randn(4, dtype=torch.float64)), TypeError,
     ["input, weight and bias", "bias torch.float64"]),
    (lambda: set_backend(Linear(6, 4), "scratch")(torch.randn(3, 6, dtype=torch.float64)), TypeError,
     ["input torch.float64, weight torch.float32"]),
])
def test_bad_input_names_expected_and_actual(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"


def test_scratch_layers_check_too():
    conv = set_backend(Conv2d(3, 8, 3), "scratch")
    with pytest.raises(ValueError, match="expected input with 3 channels"):
        conv(X)


def test_linear_takes_mixed_dtypes_under_autocast():
    """Autocast casts input, weight and bias to its dtype, in labcode as in torch."""
    x, w, b = torch.randn(2, 3, 6), torch.randn(4, 6).bfloat16(), torch.randn(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for bias in (b, None):
            ours, theirs = LF.linear(x, w, bias), torch.nn.functional.linear(x, w, bias)
            assert ours.dtype == theirs.dtype == torch.bfloat16
            torch.testing.assert_close(ours, theirs)
        layer = set_backend(Linear(6, 4), "scratch")
        assert layer(x.bfloat16()).dtype == torch.bfloat16  # a bfloat16 input, float32 weights
