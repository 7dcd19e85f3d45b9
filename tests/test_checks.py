"""Tests for labcode.checks: every check accepts the reference, calls a stub "not attempted",
rejects written-out wrong answers with the right hint, and handles misbehaving code."""
import dataclasses
import sys
import threading
from pathlib import Path

import pytest
import torch

from labcode import checks as check
from labcode.checks import answers
from labcode.checks import calling, core

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "exercises"))
import wrong_answers as wa  # noqa: E402

NAMES = sorted(check.EXERCISES)


def stub(*args, **kwargs):
    raise NotImplementedError("Your code here")


def test_every_check_has_a_public_function_and_wrong_answers():
    assert set(NAMES) == set(wa.WRONG_ANSWERS)
    for name in NAMES:
        assert callable(getattr(check, name)), name
        assert getattr(check, name).__doc__, name
        assert len(wa.WRONG_ANSWERS[name]) >= 2, name


def with_nothing_forbidden(name):
    """The exercise with nothing forbidden: the answer key (built on torch's ops) must pass."""
    return dataclasses.replace(check.EXERCISES[name], forbidden=[], forbid_answer_key=False)


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name, capsys):
    result = core.run_check(with_nothing_forbidden(name), getattr(answers, name), points=2)
    assert result.passed and result.attempted, result.message
    assert result.points == 2 and result.cases_passed == result.cases_total > 0
    out = capsys.readouterr().out.strip().splitlines()
    plural = "" if result.cases_total == 1 else "s"
    assert out[0] == f"✅ {name}: passed {result.cases_total} case{plural}"
    explanation = check.EXERCISES[name].explanation  # a question's reasoning follows its pass
    if explanation:
        assert out[1].startswith("   why:      ") and len(out) == 1 + len(explanation.splitlines())
    else:
        assert len(out) == 1


@pytest.mark.parametrize("name", NAMES)
def test_stub_is_not_attempted(name):
    result = getattr(check, name)(stub, verbose=False)
    assert not result.passed and not result.attempted
    assert "not attempted yet" in result.message and result.points == 0


@pytest.mark.parametrize("name,index", [(n, i) for n in NAMES for i in range(len(wa.WRONG_ANSWERS[n]))])
def test_wrong_answer_is_rejected_with_its_hint(name, index):
    fn, words = wa.WRONG_ANSWERS[name][index]
    result = getattr(check, name)(fn, verbose=False)
    assert not result.passed and result.attempted
    assert "input:" in result.message, result.message
    assert words in result.message, result.message
    assert "Traceback" not in result.message


def test_a_correct_answer_written_differently_passes():
    for name, fn in wa.RIGHT_ANSWERS.items():
        assert getattr(check, name)(fn, verbose=False).passed


@pytest.mark.parametrize("name", NAMES)
def test_every_check_accepts_an_independently_written_answer(name):
    assert name in wa.RIGHT_ANSWERS, f"tests/fixtures/exercises/wrong_answers.py has no correct answer for {name}"
    result = getattr(check, name)(wa.RIGHT_ANSWERS[name], verbose=False)
    assert result.passed, result.message


@pytest.mark.parametrize("name", NAMES)
def test_the_answer_key_itself_is_refused(name):
    result = getattr(check, name)(getattr(answers, name), verbose=False)
    assert not result.passed and "forbids" in result.message and "labcode.checks.answers" in result.message


BORROWED = [  # (exercise, function, words): labcode's or torch's answer, passed, wrapped or named
    ("conv2d", lambda: torch.nn.functional.conv2d, "is torch.nn.functional.conv2d"),
    ("conv2d", lambda: wa.conv2d_via_labcode, "labcode.functional.conv2d"),
    ("conv2d", lambda: wa.conv2d_via_unfold, "torch.nn.functional.unfold"),
    ("conv2d_loop", lambda: wa.conv2d_via_torch, "torch.nn.functional.conv2d"),
    ("conv2d", lambda: wa.conv2d_hidden_in_helper, "calls torch.nn.functional.conv2d"),
    ("max_pool2d", lambda: torch.nn.functional.max_pool2d, "forbids"),
    ("max_pool2d", lambda: wa.max_pool_via_torch, "torch.nn.functional.max_pool2d"),
    ("avg_pool2d", lambda: wa.avg_pool_via_torch, "torch.nn.functional.avg_pool2d"),
    ("scaled_dot_product_attention", lambda: torch.nn.functional.scaled_dot_product_attention, "forbids"),
    ("scaled_dot_product_attention", lambda: wa.attention_via_torch, "scaled_dot_product_attention"),
    ("conv_output_size", lambda: __import__("labcode.functional", fromlist=["x"]).conv_output_size, "labcode.functional"),
    ("padding_amount", lambda: wa.padding_via_labcode, "labcode.functional"),
    ("patchify", lambda: __import__("labcode.layers.attention", fromlist=["x"]).patchify, "labcode.layers"),
    ("encoder_block", lambda: wa.encoder_via_answer_key, "labcode.checks.answers"),
]


@pytest.mark.parametrize("name,get,words", BORROWED, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BORROWED)])
def test_borrowed_answers_are_refused_with_the_reason(name, get, words):
    result = getattr(check, name)(get(), verbose=False)
    assert not result.passed and result.attempted and result.points == 0
    assert "🚫" in result.message and "forbids" in result.message and words in result.message, result.message


def test_strict_mode_raises_on_a_failing_check_only(monkeypatch):
    monkeypatch.setenv("LABCODE_STRICT", "1")
    assert check.vit_sequence_length(wa.RIGHT_ANSWERS["vit_sequence_length"], verbose=False).passed
    with pytest.raises(check.CheckFailed, match="class token"):
        check.vit_sequence_length(wa.seq_no_class_token, verbose=False)
    monkeypatch.setenv("LABCODE_STRICT", "0")
    assert not check.vit_sequence_length(wa.seq_no_class_token, verbose=False).passed
    check.set_strict(True)
    try:
        with pytest.raises(AssertionError):
            check.vit_sequence_length(stub, verbose=False)
    finally:
        core._STRICT.clear()


def test_an_unwritten_helper_is_named_with_its_line():
    result = check.vit_sequence_length(wa.seq_with_unwritten_helper, verbose=False)
    assert result.attempted and "not attempted" not in result.message
    assert "grid_size()" in result.message and "not written yet" in result.message and "line" in result.message


def test_pooling_checks_leave_the_stride_out():
    for name in ("max_pool2d", "avg_pool2d"):
        cases = check.EXERCISES[name].make_cases()
        assert any(len(c.args) == 2 for c in cases) and any(c.args[2:] == (None,) for c in cases)
        result = getattr(check, name)(wa.POOL_STRIDE_NONE_IS_ONE[name], verbose=False)
        assert not result.passed and "stride=None" in result.message, result.message


def test_tanh_gelu_fails_the_encoder_block_with_its_own_hint():
    result = check.encoder_block(wa.encoder_tanh_gelu, verbose=False)
    assert not result.passed and "exact GELU" in result.message, result.message


@pytest.mark.parametrize("fn,words", [
    (lambda: wa.mbconv_round_squeeze, "not round()"),
    (lambda: wa.mbconv_no_squeeze_floor, "at least 1"),
])
def test_mbconv_squeeze_width_rounding(fn, words):
    result = check.mbconv_params(fn(), verbose=False)
    assert not result.passed and words in result.message, result.message


def test_a_hint_needs_the_mistakes_output_on_the_failing_case():
    # Forgetting the class token's position embedding loses D, as forgetting the class token
    # does: the hint must not claim to know which.
    result = check.vit_param_count(wa.vit_params_no_class_position, verbose=False)
    assert not result.passed and "position embedding" in result.message, result.message


def test_smallest_failing_input_is_reported():
    result = check.conv_output_size(wa.size_no_plus_one, verbose=False)
    assert "case 1 of" in result.message and "n=1, k=1" in result.message
    assert "expected: 1" in result.message and "got:      0" in result.message


def test_every_case_list_is_deterministic():
    for name, exercise in check.EXERCISES.items():
        first, second = exercise.make_cases(), exercise.make_cases()
        assert len(first) == len(second)
        for a, b in zip(first, second):
            assert calling.changed(a.args, b.args) is False, name


def test_raising_code_shows_the_students_error_and_line():
    result = check.conv_output_size(wa.size_raises, verbose=False)
    assert result.attempted and not result.passed
    assert "raised ZeroDivisionError" in result.message
    assert "n=1, k=1, stride=1" in result.message
    assert "in size_raises" in result.message and "Traceback" not in result.message


def test_system_exit_is_caught():
    result = check.conv_output_size(wa.size_exits, verbose=False)
    assert "raised SystemExit" in result.message


def test_not_implemented_after_some_cases_is_a_failure():
    result = check.scaled_dot_product_attention(wa.attention_not_implemented_later, verbose=False)
    assert result.attempted and "raised NotImplementedError: only 3-D inputs" in result.message


@pytest.mark.parametrize("fn,words", [
    (wa.size_returns_float, "use //"),
    (wa.size_returns_tensor, "int(t) or t.item()"),
    (wa.size_forgot_return, "forget `return`"),
])
def test_wrong_type(fn, words):
    result = check.conv_output_size(fn, verbose=False)
    assert "wrong type" in result.message and words in result.message


def test_numpy_instead_of_tensor():
    result = check.scaled_dot_product_attention(wa.attention_returns_numpy, verbose=False)
    assert "expected a torch.Tensor, got a numpy.ndarray" in result.message


def test_wrong_shape():
    result = check.patchify(wa.patchify_wrong_shape, verbose=False)
    assert "wrong shape: expected (1, 4, 1), got (1, 1, 4)" in result.message


def test_wrong_dtype():
    result = check.conv2d(wa.conv2d_float64, verbose=False)
    assert "wrong dtype: expected float32" in result.message and "got float64" in result.message


def test_nan():
    result = check.avg_pool2d(wa.avg_pool_nan, verbose=False)
    assert "NaN or inf" in result.message


def test_in_place_change_of_the_input():
    result = check.squeeze_excitation(wa.se_in_place, verbose=False)
    assert not result.passed and "changed its input x in place" in result.message


def test_timeout_on_the_main_thread():
    result = check.conv_output_size(wa.size_loops_forever, time_limit=0.3, verbose=False)
    assert result.attempted and not result.passed and "time limit" in result.message


def test_timeout_even_when_the_code_catches_exceptions():
    result = check.conv_output_size(wa.size_catches_everything, time_limit=0.3, verbose=False)
    assert "time limit" in result.message


def test_timeout_off_the_main_thread_uses_a_watchdog():
    # The abandoned call goes on in the background: make it one that ends (an endless loop
    # would hold the GIL and slow every later test).
    box = {}
    thread = threading.Thread(target=lambda: box.update(
        result=check.conv_output_size(wa.size_sleeps, time_limit=0.3, verbose=False)))
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and "time limit" in box["result"].message


def test_not_a_function():
    result = check.conv2d(5, verbose=False)
    assert not result.passed and "your function itself" in result.message


def test_a_bug_in_a_check_never_raises(monkeypatch):
    def broken():
        raise RuntimeError("boom")
    monkeypatch.setattr(check.EXERCISES["padding_amount"], "make_cases", broken)
    result = check.padding_amount(answers.padding_amount, verbose=False)
    assert not result.passed and "the check itself failed" in result.message


def test_result_object():
    result = check.padding_amount(wa.RIGHT_ANSWERS["padding_amount"], verbose=False)
    assert "padding_amount: passed" in repr(result)
    assert result.to_dict()["passed"] is True and result.to_dict()["exercise"] == "padding_amount"


def test_rel_error_is_scale_aware():
    a = torch.tensor([1.0, 1e-9])
    assert core.rel_error(a, a + 1e-7) < 1e-6
    assert core.rel_error(a, a * 2) == pytest.approx(1 / 3)


# ---- the references agree with torchvision (the checks' answers must be right) ---------


def test_references_match_torchvision_models():
    torchvision = pytest.importorskip("torchvision")
    from torchvision.models.efficientnet import MBConv, MBConvConfig
    from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        features = torchvision.models.alexnet().features
    for size in [63, 100, (227, 150)]:
        h, w = (size, size) if isinstance(size, int) else size
        x, shapes = torch.zeros(1, 3, h, w, device="meta"), []
        for layer in features:
            x = layer(x)
            shapes.append(tuple(x.shape[1:]))
        assert answers.alexnet_output_shapes(size) == shapes

    for c_in, c_out, expand, k in [(16, 24, 4, 3), (24, 40, 6, 5), (32, 16, 1, 3)]:
        config = MBConvConfig(expand, k, 1, c_in, c_out, 1, 1.0, 1.0)
        block = MBConv(config, 0.0, torch.nn.BatchNorm2d)
        assert answers.mbconv_params(c_in, c_out, expand, k, 0.25) == sum(p.numel() for p in block.parameters())

    for config in [dict(image_size=32, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10),
                   dict(image_size=24, patch_size=8, num_layers=1, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=3)]:
        model = VisionTransformer(**config)
        assert answers.vit_param_count(config) == sum(p.numel() for p in model.parameters())

    torch.manual_seed(0)
    block = EncoderBlock(num_heads=2, hidden_dim=8, mlp_dim=16, dropout=0.0, attention_dropout=0.0).eval()
    x = torch.randn(3, 5, 8)
    params = {k: v for k, v in block.state_dict().items()}
    assert set(params) == set(answers.ENCODER_KEYS)
    torch.testing.assert_close(answers.encoder_block(x, params, 2), block(x))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_references_match_torch_modules():
    for c_in, c_out, k, groups, bias in [(4, 8, 3, 2, True), (6, 6, 5, 3, False)]:
        conv = torch.nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias)
        assert answers.grouped_conv_params(c_in, c_out, k, groups, bias) == sum(p.numel() for p in conv.parameters())
    layers = [("conv", 8, 3, 1, 1), ("relu",), ("maxpool", 2, 2), ("flatten",), ("linear", 10)]
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 1, 1), torch.nn.ReLU(), torch.nn.MaxPool2d(2, 2),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10))
    assert answers.cnn_param_count(layers, (3, 12, 12)) == sum(p.numel() for p in model.parameters())
    for case in check.EXERCISES["cnn_param_count"].make_cases():  # every spec the check uses builds and runs
        layers, shape = case.args
        model = answers.build_cnn(layers, shape, device="cpu")
        model(torch.zeros(1, *shape))  # raises if a linear layer got the wrong in_features
        assert answers.cnn_param_count(layers, shape) == sum(p.numel() for p in model.parameters())
    x, w = torch.randn(1, 2, 7, 6), torch.randn(3, 2, 3, 3)
    torch.testing.assert_close(answers.conv2d(x, w, None, 1, "same"), torch.nn.functional.conv2d(x, w, padding="same"))
    x, w = torch.randn(1, 2, 7, 6), torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(answers.conv2d(x, w, None, 1, "same"), torch.nn.functional.conv2d(x, w, padding="same"))
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 6, 4), torch.randn(2, 3, 6, 7)
    torch.testing.assert_close(answers.scaled_dot_product_attention(q, k, v),
                               torch.nn.functional.scaled_dot_product_attention(q, k, v))


@pytest.mark.gpu
def test_checks_on_cuda():
    for name, exercise in check.EXERCISES.items():
        if exercise.kind == "tensor":
            result = core.run_check(with_nothing_forbidden(name), getattr(answers, name), device="cuda", verbose=False)
            assert result.passed, result.message
    result = check.scaled_dot_product_attention(wa.attention_no_scale, device="cuda", verbose=False)
    assert not result.passed and "1 / sqrt(d)" in result.message

    def to_cpu(x, w, b=None, stride=1, padding=0):
        return answers.conv2d(x, w, b, stride, padding).cpu()

    result = check.conv2d(to_cpu, device="cuda", verbose=False)
    assert not result.passed and "wrong device" in result.message
