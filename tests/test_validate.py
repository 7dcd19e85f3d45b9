"""labcode.validate: models check their batch once, layers called on their own still
check, builders refuse bad sizes, and uint8 images get a hint to convert them."""
from __future__ import annotations

import ast
import pathlib

import pytest
import torch

from labcode import validate
from labcode.data import load_digits
from labcode.layers import (
    AvgPool2d, Conv2d, Linear, MaxPool2d, MultiHeadSelfAttention, PatchEmbedding, set_backend,
)
from labcode.models import (
    alexnet, alexnet2012, alexnet_small, efficientnet_v2_l, efficientnet_v2_m, efficientnet_v2_s,
    efficientnet_v2_small, vit_b_16, vit_b_32, vit_l_16, vit_small,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# The checks that look at a tensor; argument checks (ints, pairs) are not counted.
TENSOR_CHECKS = (
    "tensor", "floating", "rank", "image_batch", "token_batch", "features", "pool_input",
    "kernel_fits", "conv2d_arguments", "linear_arguments", "query_key", "attention_value",
)

SMALL_MODELS = {
    "alexnet_small": lambda: alexnet_small(),
    "efficientnet_v2_small": lambda: efficientnet_v2_small(),
    "vit_small": lambda: vit_small(num_layers=2),
}


@pytest.fixture
def checks(monkeypatch):
    """Every tensor check made, as (check name, id of the tensor it looked at)."""
    seen: list[tuple[str, int | None]] = []
    for name in TENSOR_CHECKS:
        original = getattr(validate, name)

        def counted(fn, *args, _name=name, _original=original, **kwargs):
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            seen.append((_name, None if first is None else id(first)))
            return _original(fn, *args, **kwargs)

        monkeypatch.setattr(validate, name, counted)
    return seen


@pytest.mark.parametrize("backend", ["torch", "scratch"])
@pytest.mark.parametrize("family", sorted(SMALL_MODELS))
def test_a_model_checks_its_batch_once(family, backend, checks):
    torch.manual_seed(0)
    model = set_backend(SMALL_MODELS[family](), backend).eval()
    batch = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        model(batch)
    image_checks = [c for c in checks if c[0] == "image_batch"]
    assert image_checks == [("image_batch", id(batch))], checks
    # Everything else was part of that one check: it looked at the batch and nothing else.
    assert {tensor_id for _, tensor_id in checks} == {id(batch)}, checks
    assert len([c for c in checks if c[0] == "tensor"]) == 1, checks

    # The counter can fail: with the inner layers checking again, it sees many more checks.
    checks.clear()
    for layer in model.modules():
        if isinstance(layer, validate.ChecksInput):
            layer.check_input = True
    with torch.no_grad():
        model(batch)
    assert len([c for c in checks if c[0] in ("image_batch", "features", "token_batch")]) > 3


@pytest.mark.parametrize("backend", ["torch", "scratch"])
@pytest.mark.parametrize("layer, bad, error, words", [
    (lambda: Conv2d(3, 4, 3), torch.randn(2, 5, 8, 8), ValueError, ["3 input channels", "got 5"]),
    (lambda: Conv2d(3, 4, 3), torch.randn(3, 8, 8), ValueError, ["4-D", "(3, 8, 8)"]),
    (lambda: Conv2d(3, 4, 5), torch.randn(1, 3, 4, 4), ValueError, ["(5, 5)", "larger", "(4, 4)"]),
    (lambda: Conv2d(1, 4, 3), torch.zeros(1, 1, 8, 8, dtype=torch.uint8), TypeError, ["torch.uint8"]),
    (lambda: Linear(5, 3), torch.randn(2, 4), ValueError, ["(..., 5)", "(2, 4)"]),
    (lambda: Linear(5, 3), [1.0] * 5, TypeError, ["tensor", "list"]),
    (lambda: MaxPool2d(3), torch.randn(1, 1, 2, 2), ValueError, ["(3, 3)", "(2, 2)"]),
    (lambda: AvgPool2d(2), torch.randn(8, 8), ValueError, ["4-D", "(8, 8)"]),
    (lambda: MultiHeadSelfAttention(8, 2), torch.randn(2, 5, 6), ValueError, ["embed_dim=8", "(2, 5, 6)"]),
    (lambda: PatchEmbedding(8, 4, 3, 6), torch.randn(2, 1, 8, 8), ValueError, ["3 input channels", "got 1"]),
    (lambda: PatchEmbedding(8, 4, 3, 6), torch.randn(1, 3, 10, 8), ValueError, ["10x8", "patch_size=4"]),
])
def test_a_layer_called_directly_still_checks(layer, bad, error, words, backend):
    module = set_backend(layer(), backend)
    assert module.check_input
    with pytest.raises(error) as info:
        module(bad)
    for word in words:
        assert word in str(info.value), f"{word!r} missing from: {info.value}"


def test_a_layer_inside_a_model_trusts_it_until_switched_back():
    model = alexnet_small()
    conv1 = model.features[0]
    assert not conv1.check_input
    assert all(not m.check_input for m in model.modules() if isinstance(m, validate.ChecksInput))
    conv1.check_input = True
    with pytest.raises(ValueError, match="expected 1 input channels, got 3"):
        conv1(torch.randn(1, 3, 28, 28))


BUILDERS = {
    "alexnet": alexnet, "alexnet2012": alexnet2012, "alexnet_small": alexnet_small,
    "efficientnet_v2_s": efficientnet_v2_s, "efficientnet_v2_m": efficientnet_v2_m,
    "efficientnet_v2_l": efficientnet_v2_l, "efficientnet_v2_small": efficientnet_v2_small,
    "vit_b_16": vit_b_16, "vit_b_32": vit_b_32, "vit_l_16": vit_l_16, "vit_small": vit_small,
}
# What each builder takes besides num_classes.
SIZE_ARGUMENTS = {
    "alexnet_small": ["in_channels"],
    "efficientnet_v2_small": ["in_channels"],
    "vit_b_16": ["image_size"], "vit_b_32": ["image_size"], "vit_l_16": ["image_size"],
    "vit_small": ["image_size", "in_channels", "num_layers", "num_heads", "hidden_dim", "mlp_dim"],
}
# Below 1: the right kind, a wrong value. Not an int: the wrong kind.
TOO_SMALL = [0, -1]
NOT_AN_INT = [10.0, "10", True, None]


def _cases():
    for builder, extra in sorted(BUILDERS.items()):
        for argument in ["num_classes"] + SIZE_ARGUMENTS.get(builder, []):
            for bad in TOO_SMALL:
                yield pytest.param(builder, argument, bad, ValueError, id=f"{builder}-{argument}={bad!r}")
            for bad in NOT_AN_INT:
                yield pytest.param(builder, argument, bad, TypeError, id=f"{builder}-{argument}={bad!r}")


@pytest.mark.parametrize("builder, argument, bad, error", list(_cases()))
def test_builders_refuse_bad_sizes_before_building(builder, argument, bad, error):
    with torch.device("meta"), pytest.raises(error) as info:
        BUILDERS[builder](**{argument: bad})
    message = str(info.value)
    assert argument in message and repr(bad) in message, message
    assert "at least 1" in message, message


@pytest.mark.parametrize("builder", [b for b in sorted(BUILDERS) if not b.startswith("efficientnet")])
def test_builders_refuse_a_dropout_outside_0_1(builder):
    # The EfficientNetV2 builders take no dropout; EfficientNetV2 itself checks it (below).
    with torch.device("meta"), pytest.raises(ValueError, match=r"dropout must be in \[0, 1\], got 1.5"):
        BUILDERS[builder](dropout=1.5)


def test_efficientnet_refuses_a_dropout_outside_0_1():
    from labcode.models.efficientnet import EFFICIENTNET_V2_SMALL, EfficientNetV2

    with pytest.raises(ValueError, match=r"stochastic_depth_prob must be in \[0, 1\], got -0.1"):
        EfficientNetV2(EFFICIENTNET_V2_SMALL, stochastic_depth_prob=-0.1)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\], got 2"):
        EfficientNetV2(EFFICIENTNET_V2_SMALL, dropout=2)


def test_alexnet_small_in_channels_string_is_named():
    with pytest.raises(TypeError, match=r"in_channels must be an int of at least 1, got '1' \(str\)"):
        alexnet_small(in_channels="1")


def test_not_an_int_is_both_type_and_value_error():
    # Both, so code written for the builders' old ValueError still catches it.
    for error in (TypeError, ValueError):
        with pytest.raises(error):
            validate.positive_int("f", "n", 2.5)


@pytest.mark.parametrize("family", sorted(SMALL_MODELS))
@pytest.mark.parametrize("backend", ["torch", "scratch"])
def test_uint8_digits_get_a_hint_to_convert(family, backend):
    images, _ = load_digits("test")
    model = set_backend(SMALL_MODELS[family](), backend).eval()
    with pytest.raises(TypeError) as info:
        model(images[:2])
    message = str(info.value)
    for word in ["floating-point", "torch.uint8", "images.float() / 255", "GPULoader"]:
        assert word in message, f"{word!r} missing from: {message}"
    with torch.no_grad():  # and the conversion the message names works
        assert model(images[:2].float() / 255).shape == (2, 10)


def test_no_module_imports_a_private_module_of_another_package():
    """Private modules and names stay inside their own package (a sibling module may use them)."""
    root = pathlib.Path(__file__).resolve().parents[1] / "labcode"

    def package_of(dotted: str) -> str:
        path = root.parent.joinpath(*dotted.split("."))
        return dotted if (path / "__init__.py").exists() else dotted.rpartition(".")[0]

    offenders = []
    for path in root.rglob("*.py"):
        package = ".".join(("labcode",) + path.relative_to(root).parent.parts)
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            for module in modules:
                parts = module.split(".")
                private = [i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")]
                if private and package_of(".".join(parts[: private[0]])) != package:
                    offenders.append(f"{path.relative_to(root)}: {module}")
    assert offenders == []
