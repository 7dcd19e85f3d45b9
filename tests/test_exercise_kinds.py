"""The exercise kinds beyond "write a function": modules that load torchvision's weights,
questions (choice and numeric, answer hidden, reasoning shown on a pass), and the answer
keys of the new functions against torch, torchvision and labcode."""
import dataclasses
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labcode import checks as check
from labcode.checks import answers, calling, ch2, core

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "exercises"))
import wrong_answers as wa  # noqa: E402


def _torchvision_block(kind, config):
    from torchvision.models.efficientnet import FusedMBConvConfig, MBConv, FusedMBConv, MBConvConfig
    from functools import partial

    c_in, c_out, expand, k, stride = config
    norm = partial(torch.nn.BatchNorm2d, eps=1e-3)
    if kind == "mbconv_block":
        config = MBConvConfig(expand, k, stride, c_in, c_out, 1, 1.0, 1.0)
    else:
        config = FusedMBConvConfig(expand, k, stride, c_in, c_out, 1)
    config.input_channels, config.out_channels = c_in, c_out  # the config rounds to multiples of 8
    return (MBConv if kind == "mbconv_block" else FusedMBConv)(config, 0.0, norm)


@pytest.mark.parametrize("name", ["mbconv_block", "fused_mbconv_block"])
def test_block_weights_are_torchvisions_and_the_key_computes_its_output(name):
    pytest.importorskip("torchvision")
    for case in check.EXERCISES[name].make_cases():
        config, weights, x = case.args
        block = _torchvision_block(name, config).eval()
        theirs = block.state_dict()
        assert {k: tuple(v.shape) for k, v in theirs.items()} == {k: tuple(v.shape) for k, v in weights.items()}
        block.load_state_dict(weights)
        with torch.no_grad():
            torch.testing.assert_close(calling.module_runner(getattr(answers, name))(*case.args), block(x))


def test_the_blocks_include_efficientnet_v2_s_own():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        features = torchvision.models.efficientnet_v2_s().features
    layouts = {(type(b).__name__, tuple((k, tuple(v.shape)) for k, v in b.state_dict().items()))
               for stage in features[1:7] for b in stage}
    for name, kind in [("mbconv_block", "MBConv"), ("fused_mbconv_block", "FusedMBConv")]:
        ours = {(kind, tuple((k, tuple(v.shape)) for k, v in c.args[1].items()))
                for c in check.EXERCISES[name].make_cases()}
        assert len(ours & layouts) >= 3, name


def test_encoder_module_matches_torchvision():
    pytest.importorskip("torchvision")
    from torchvision.models.vision_transformer import EncoderBlock

    for case in check.EXERCISES["encoder_block_module"].make_cases():
        (heads, dim, mlp), weights, x = case.args
        block = EncoderBlock(heads, dim, mlp, 0.0, 0.0).eval()
        block.load_state_dict(weights)
        with torch.no_grad():
            torch.testing.assert_close(calling.module_runner(answers.encoder_block_module)(*case.args), block(x),
                                       rtol=1e-5, atol=1e-5)


def test_resize_matches_torchvision():
    pytest.importorskip("torchvision")
    from torchvision.models.vision_transformer import interpolate_embeddings

    pos = torch.randn(1, 1 + 4 * 4, 8)
    theirs = interpolate_embeddings(6 * 4, 4, {"encoder.pos_embedding": pos})["encoder.pos_embedding"]
    torch.testing.assert_close(answers.resize_position_embeddings(pos, 6), theirs)


def test_new_function_keys_against_torch_and_labcode():
    from labcode.progressive import ProgressiveSchedule
    from labcode.receptive_field import receptive_field

    for case in check.EXERCISES["receptive_field"].make_cases()[:20]:
        layers = [torch.nn.Conv2d(1, 1, k, s) for k, s in case.args[0]]
        assert answers.receptive_field(case.args[0]) == receptive_field(layers)
    for epochs, stages, first, last in (c.args for c in check.EXERCISES["progressive_image_sizes"].make_cases()):
        schedule = ProgressiveSchedule(stages=stages, image_size=(first, last))
        expected = [schedule.stage(schedule.stage_of(e, epochs), epochs).image_size for e in range(epochs)]
        assert answers.progressive_image_sizes(epochs, stages, first, last) == expected
    x = torch.randn(2, 3, 9, 8)
    torch.testing.assert_close(F.conv2d(x, answers.avg_pool_kernel(3, 2), stride=2), F.avg_pool2d(x, 2))
    x, w = torch.randn(2, 3, 7, 6, requires_grad=True), torch.randn(4, 3, 3, 3)
    g = torch.randn(2, 4, 5, 4)
    F.conv2d(x, w).backward(g)
    torch.testing.assert_close(answers.conv_input_gradient(g, w), x.grad)
    assert answers.arithmetic_intensity(96, 96, 3, 56, 56, 96) < 5 < answers.arithmetic_intensity(96, 96, 3, 56, 56, 1)
    assert answers.footprint_experiment() == receptive_field([torch.nn.Conv2d(1, 1, 3), torch.nn.Conv2d(1, 1, 3, 2),
                                                              torch.nn.Conv2d(1, 1, 5)])


def test_question_answers_agree_with_the_models():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        alexnet = torchvision.models.alexnet()
    sizes = {"A": alexnet.features[0], "B": alexnet.features[6], "C": alexnet.classifier[1], "D": alexnet.classifier[6]}
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in sizes.items()}
    assert max(counts, key=counts.get) == answers.alexnet_biggest_layer()
    fused, pair = 48 * 192 * 9, 48 * 192 + 192 * 9
    assert answers.fused_mbconv_cost() == ("B" if fused > pair else "A")
    from labcode import flops
    from labcode.models.efficientnet import efficientnet_v2_s
    with torch.device("meta"):
        model = efficientnet_v2_s()
    big, small = flops.count(model, (1, 3, 224, 224)), flops.count(model, (1, 3, 112, 112))
    assert big.params == small.params and 0.2 < small.macs / big.macs < 0.3 and answers.resolution_experiment() == "B"


# ---- the kinds themselves --------------------------------------------------------------


def test_a_question_hides_its_answer_and_explains_a_pass():
    wrong = check.alexnet_biggest_layer(wa.alexnet_conv1, verbose=False)
    assert not wrong.passed and "expected" not in wrong.message and "'C'" not in wrong.message
    right = check.alexnet_biggest_layer(wa.alexnet_right, verbose=False)
    assert right.passed and "why:" in right.message and "37,752,832" in right.message
    number = check.attention_cost_growth(wa.cost_cubed, verbose=False)
    assert not number.passed and "16" not in number.message


@pytest.mark.parametrize("answer,words", [
    (lambda: "E", "not one of the options: 'E'"),
    (lambda: 3.5, "wrong type"),
    (lambda: None, "forget `return`"),
    (lambda: [], "wrong type"),
])
def test_a_choice_outside_the_options_is_named(answer, words):
    result = check.larger_image_cost(answer, verbose=False)
    assert not result.passed and result.attempted and words in result.message, result.message


def test_choice_sets_ignore_order_case_and_container():
    assert core.choice_set(" b ") == frozenset({"B"}) and core.choice_set([6, 2]) == frozenset({2, 6})
    assert calling.sanitize({5, 1}) == [1, 5]
    assert core.choice_set(calling.sanitize(frozenset({4, 1}))) == frozenset({1, 4})
    assert core.choice_set("") is None and core.choice_set([1, None]) is None


def test_a_module_stub_is_not_attempted_even_with_helper_methods():
    class Block(torch.nn.Module):
        def __init__(self, *args):
            super().__init__()
            raise NotImplementedError("Your code here")

    class WithHelper(wa.MBConvRight):  # builds and loads; its forward calls an unwritten method
        def helper(self, x):
            raise NotImplementedError("Your code here")

        def forward(self, x):
            return self.helper(x)

    for cls in (Block, WithHelper):
        result = check.mbconv_block(cls, verbose=False)
        assert not result.attempted and "not attempted yet" in result.message, result.message


def test_a_module_whose_weights_do_not_fit_is_told_which():
    result = check.mbconv_block(wa.MBConvHiddenSqueeze, verbose=False)
    assert not result.passed and "do not fit" in result.message and "your module has no block." in result.message


def test_a_module_class_must_build_a_module():
    result = check.fused_mbconv_block(lambda *args: "not a module", verbose=False)
    assert not result.passed and "should build a torch.nn.Module" in result.message, result.message


def test_torchs_attention_module_is_refused_in_the_encoder_module():
    result = check.encoder_block_module(wa.EncoderViaTorchAttention, verbose=False)
    assert not result.passed and "🚫" in result.message and "MultiheadAttention.forward" in result.message


def test_subclassing_the_answer_key_is_refused():
    class Mine(answers.MBConvBlock):
        pass
    result = check.mbconv_block(Mine, verbose=False)
    assert not result.passed and "🚫" in result.message and "labcode.checks.answers" in result.message


@pytest.mark.parametrize("changes,words", [
    (dict(kind="choice"), "needs a tuple of at least 2 options"),
    (dict(kind="int", options=("A", "B")), "options are for kind 'choice'"),
])
def test_declare_checks_the_new_fields(monkeypatch, changes, words):
    monkeypatch.setattr(core, "EXERCISES", dict(core.EXERCISES))
    monkeypatch.setattr(core, "CHECKS", dict(core.CHECKS))
    spec = dict(signature="toy_q() -> str", doc="Check fn() -> str.", reference=lambda: "A",
                make_cases=lambda: [core.Case(())], kind="choice", options=())
    spec.update(changes)
    with pytest.raises(ValueError, match=re.escape(words)):
        core.declare("toy_q", **spec)


def test_the_grader_path_runs_a_module_class():
    """What grading does: run_cases in the kernel with module=True, then evaluate outside it."""
    exercise = check.EXERCISES["fused_mbconv_block"]
    cases = exercise.make_cases()
    for cls, passes in [(wa.FusedRight, True), (wa.FusedNoSkip, False)]:
        outcomes = calling.run_cases(cls, [(c.args, c.kwargs) for c in cases], exercise.arg_names, 30.0,
                                     forbidden=[list(f) for f in exercise.forbidden_calls()], module=True)
        result = core.evaluate(exercise, cases, lambda i, case: outcomes[i] if i < len(outcomes) else None)
        assert result.passed is passes, result.message


def test_the_grader_finds_a_class_exercise_by_its_class_name():
    from labcode import grading

    source = ("class FusedMBConv(nn.Module):\n    def __init__(self, c_in, c_out, expand, k, stride):\n"
              "        super().__init__()\n        ### BEGIN SOLUTION\n        pass\n        ### END SOLUTION\n")
    assert grading._function_in(source, "fused_mbconv_block") == "FusedMBConv"
    exercise = check.EXERCISES["encoder_block_module"]
    source = ("import torch.nn.functional as F\nclass Block:\n    def forward(self, x):\n"
              "        return F.multi_head_attention_forward(x)\n")
    assert core.forbidden_in_source(source, "Block", exercise) == ["torch.nn.functional.multi_head_attention_forward"]
