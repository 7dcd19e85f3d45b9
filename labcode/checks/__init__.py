"""Exercise checks: a student writes a function, the cell under it checks it.

In a chapter notebook
---------------------
    from labcode import checks as check

    def conv_output_size(n, k, stride=1, padding=0, dilation=1):
        \"\"\"Output size along one axis.\"\"\"
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

    check.conv_output_size(conv_output_size)      # the check cell, right under the exercise

A check calls the student's function on many inputs (fixed seeds: the same inputs every
run), smallest first, compares each answer with `labcode.checks.answers`, and prints one line:

    ✅ conv_output_size: passed 200 cases

or, at the first wrong answer, the input, the expected and the received answer, what is
wrong with it and, when the answer equals a known mistake, a hint naming it (true
convolution instead of cross-correlation, 'same' padding taken as k - 1 on each side, an
output off by one, attention without 1/sqrt(d), patches in the wrong order, ...). A stub
that still raises NotImplementedError gets "not attempted yet". Code that raises, returns
the wrong type, shape, dtype or device, returns NaN, changes its input in place, or runs
past the time limit gets its own message, never a traceback from labcode. A check never
raises: notebooks keep running under nbval and in Colab.

Every check has the same keyword arguments and returns a `CheckResult`:

    check.NAME(fn, *, time_limit=None, points=1, verbose=True)            numbers and shapes
    check.NAME(fn, *, time_limit=None, device=None, points=1, verbose=True)   tensor answers

    time_limit  seconds for the whole check (default: the exercise's, 5 to 30 s)
    device      run the student's function on this device ("cuda"); the answer must come
                back on it. Default: CPU tensors.
    points      what a pass is worth (CheckResult.points is 0 or this)
    verbose     print the message (default True)

    CheckResult(name, passed, attempted, message, points, max_points, cases_passed, cases_total)

Numbers are compared by relative error, max|a - b| / max(1e-8, max(|a| + |b|)), at most
1e-4 for float32 (1e-5 for float64); ints and shapes exactly; tensors must also match in
shape, dtype and device.

The checks (help(check.NAME) gives each contract)
-------------------------------------------------
Chapter 1  conv_output_size(n, k, stride, padding, dilation=1) -> int
           padding_amount(mode, k) -> (before, after)
           conv2d(x, w, b=None, stride=1, padding=0) -> tensor       (conv2d_loop: same, small inputs)
           max_pool2d(x, kernel_size, stride), avg_pool2d(x, kernel_size, stride) -> tensor
           cnn_param_count(layers, input_shape) -> int
Chapter 2  alexnet_output_shapes(input_size) -> list of (C, H, W)
           grouped_conv_params(c_in, c_out, k, groups, bias) -> int
           topk_error(logits, labels, k) -> float
           squeeze_excitation(x, w1, b1, w2, b2) -> tensor
           mbconv_params(c_in, c_out, expand, k, se_ratio) -> int
           compound_scaling(base_channels, base_layers, width_mult, depth_mult) -> (channels, layers)
Chapter 3  patchify(images, p) -> (B, N, C*p*p)
           vit_sequence_length(image_size, patch_size) -> int
           vit_param_count(config) -> int
           scaled_dot_product_attention(q, k, v) -> tensor
           split_heads(x, h) -> (B, h, N, D/h), merge_heads(x) -> (B, N, h*d)
           add_class_token_and_positions(tokens, cls, pos) -> (B, N+1, D)
           encoder_block(x, params, num_heads) -> tensor

Writing exercise notebooks (for chapter authors)
------------------------------------------------
Write the solution notebook; `labcode assign` makes the student version from it.

1. The exercise cell holds the function with its def line and docstring, then the answer
   between nbgrader's markers, each alone on its line:
       ### BEGIN SOLUTION
       ...
       ### END SOLUTION
   `labcode assign` replaces the marked lines with `raise NotImplementedError("Your code here")`
   at the marker's indentation, so nbgrader and otter-grader can read the same notebook.
2. The check cell sits right under it and calls `check.NAME(function_name)`.
3. Points: put {"labcode": {"exercise": "NAME", "points": 2}} in the metadata of the
   exercise cell or of the check cell (default 1 point). "exercise" is the check's NAME;
   "function" may name the student's function when it differs from the def in the
   exercise cell (or from the argument of check.NAME(...) in a check cell). A notebook
   without such metadata is graded from its `check.NAME(function)` calls, 1 point each.
4. Commit the student notebook made by `labcode assign` next to the solution; a test can
   call `labcode.assign.assert_up_to_date(source, student)` to catch stale ones.

`labcode grade` runs each submission, then calls the submitted functions again from the
grader's own copy of these checks (see labcode.grading).

Adding a check: write the reference in labcode/checks/answers.py, then an `Exercise` (cases,
kind, mistakes) registered in the chapter module, and a public function calling run_check.
"""
from __future__ import annotations

from labcode.checks.ch2 import (
    alexnet_output_shapes,
    compound_scaling,
    grouped_conv_params,
    mbconv_params,
    squeeze_excitation,
    topk_error,
)
from labcode.checks.ch1 import (
    avg_pool2d,
    cnn_param_count,
    conv2d,
    conv2d_loop,
    conv_output_size,
    max_pool2d,
    padding_amount,
)
from labcode.checks.core import EXERCISES, CheckResult, Exercise, run_check
from labcode.checks.ch3 import (
    add_class_token_and_positions,
    encoder_block,
    merge_heads,
    patchify,
    scaled_dot_product_attention,
    split_heads,
    vit_param_count,
    vit_sequence_length,
)

__all__ = [
    "EXERCISES", "CheckResult", "Exercise", "run_check",
    "conv_output_size", "padding_amount", "conv2d", "conv2d_loop", "max_pool2d", "avg_pool2d",
    "cnn_param_count",
    "alexnet_output_shapes", "grouped_conv_params", "topk_error", "squeeze_excitation",
    "mbconv_params", "compound_scaling",
    "patchify", "vit_sequence_length", "vit_param_count", "scaled_dot_product_attention",
    "split_heads", "merge_heads", "add_class_token_and_positions", "encoder_block",
]
