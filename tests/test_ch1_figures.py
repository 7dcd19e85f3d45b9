"""Tests for chapter 1's drawing helpers (labcode.figures.ch1) and explorer (labcode.widgets.conv).

Headless (Agg). The pictures count kernel positions by sliding; the tests check them
against the output-size formula in labcode.functional and against torch's real output.
"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from labcode.figures import ch1  # noqa: E402

geometry = st.tuples(
    st.integers(1, 12), st.integers(1, 6), st.integers(1, 4), st.integers(0, 4), st.integers(1, 3)
)


def torch_out_size(n, k, s, p, d):
    x = torch.zeros(1, 1, n, n)
    w = torch.zeros(1, 1, k, k)
    try:
        return F.conv2d(x, w, stride=s, padding=p, dilation=d).shape[-1]
    except RuntimeError:  # kernel larger than the padded input
        return 0


@settings(max_examples=60, deadline=None)
@given(geometry)
def test_kernel_positions_count_matches_torch(g):
    assert len(ch1.kernel_positions(*g)) == torch_out_size(*g)


def _cells(ax, gid):
    """(row, col) of every square patch with this gid (rows grow downwards)."""
    return {(int(round(-p.get_y() - 1)), int(round(p.get_x()))) for p in ax.patches
            if p.get_gid() == gid}


@settings(max_examples=30, deadline=None)
@given(geometry, st.data())
def test_sliding_picture_highlights_exactly_the_kernel_cells(g, data):
    n, k, s, p, d = g
    m = torch_out_size(*g)
    if m == 0:
        return
    i = data.draw(st.integers(0, m - 1))
    j = data.draw(st.integers(0, m - 1))
    fig, ax = plt.subplots()
    pic = ch1.draw_conv_step(ax, n, k, s, p, d, out_pos=(i, j))
    expected = {(i * s + a * d, j * s + b * d) for a in range(k) for b in range(k)}
    assert _cells(ax, "kernel") == expected
    assert pic.kernel_cells == expected
    assert pic.out_size == m
    size = n + 2 * p
    drawn = _cells(ax, "kernel") | _cells(ax, "input") | _cells(ax, "padding")
    assert drawn == {(r, c) for r in range(size) for c in range(size)}
    inside = {(r, c) for r in range(p, p + n) for c in range(p, p + n)}
    assert _cells(ax, "input") == inside - expected
    assert _cells(ax, "padding") == drawn - inside - expected
    now = [q for q in ax.patches if q.get_gid() == "output_now"]
    assert len(now) == 1
    assert len([q for q in ax.patches if q.get_gid() in ("output", "output_now")]) == m * m
    plt.close(fig)


def test_sliding_picture_values_equal_torch_cross_correlation():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, (6, 6)).astype(float)
    w = rng.integers(-2, 3, (3, 3)).astype(float)
    ref = F.conv2d(torch.tensor(x)[None, None], torch.tensor(w)[None, None], stride=2, padding=1)
    m = ref.shape[-1]
    for i in range(m):
        for j in range(m):
            fig, ax = plt.subplots()
            pic = ch1.draw_conv_step(ax, 6, 3, 2, 1, 1, (i, j), values=x, kernel=w)
            assert pic.value == pytest.approx(float(ref[0, 0, i, j]))
            plt.close(fig)


def test_draw_conv_step_rejects_bad_input():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="values must have shape"):
        ch1.draw_conv_step(ax, 5, 3, values=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="out_pos"):
        ch1.draw_conv_step(ax, 5, 3, out_pos=(3, 0))
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        ch1.kernel_positions(5, 2.5)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        ch1.kernel_positions(5, 3, stride=0)
    plt.close(fig)


def test_conv_steps_figure_one_panel_per_output_cell():
    fig = ch1.conv_steps_figure(5, 3)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(titled) == 9
    with pytest.raises(ValueError, match="does not fit"):
        ch1.conv_steps_figure(2, 3)
    plt.close(fig)


def test_padding_figure_output_sizes_match_torch():
    n, k = 5, 3
    fig = ch1.padding_figure(n, k)
    expected = {
        "valid": F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), padding="valid"),
        "same": F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), padding="same"),
        "full": F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), padding=k - 1),
    }
    for ax, (mode, out) in zip(fig.axes, expected.items()):
        m = out.shape[-1]
        assert ax.get_title().startswith(mode)
        assert f"{m}x{m} output" in ax.get_title()
        outputs = [q for q in ax.patches if q.get_gid() in ("output", "output_now")]
        assert len(outputs) == m * m
    assert fig.axes[2].get_title().endswith(f"{n + k - 1}x{n + k - 1} output")
    with pytest.raises(ValueError, match="odd kernel"):
        ch1.padding_figure(4, 2)
    plt.close(fig)


def test_pooling_figure_numbers_equal_torch():
    x = np.arange(16, dtype=float).reshape(4, 4)[::-1] % 7
    fig = ch1.pooling_figure(x, 2)
    t = torch.tensor(x.copy())[None, None]
    for ax, ref in zip(fig.axes[1:], (F.max_pool2d(t, 2), F.avg_pool2d(t, 2))):
        shown = sorted(float(txt.get_text()) for txt in ax.texts)
        assert shown == pytest.approx(sorted(ref.flatten().tolist()), abs=0.01)
    with pytest.raises(ValueError, match="divisible"):
        ch1.pooling_figure(np.zeros((3, 4)), 2)
    plt.close(fig)


def test_activation_figure_gradients_are_the_analytic_ones():
    fig = ch1.activation_figure()
    grads = {line.get_label(): line for line in fig.axes[1].lines if not line.get_label().startswith("_")}
    x = torch.tensor(grads["sigmoid"].get_xdata())
    s = torch.sigmoid(x)
    assert np.allclose(grads["sigmoid"].get_ydata(), s * (1 - s), atol=1e-6)
    assert np.allclose(grads["tanh"].get_ydata(), 1 - torch.tanh(x) ** 2, atol=1e-6)
    relu = grads["ReLU"].get_ydata()
    assert np.array_equal(relu[x.numpy() > 0], np.ones(int((x > 0).sum())))
    assert np.array_equal(relu[x.numpy() < 0], np.zeros(int((x < 0).sum())))
    plt.close(fig)


def _small_cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * 7 * 7, 10),
    )


def test_layer_shapes_and_pipeline_figure():
    model = _small_cnn()
    rows = ch1.layer_shapes(model, (1, 28, 28))
    assert rows[0] == ("input", (1, 28, 28))
    assert [shape for _, shape in rows[1:]] == [
        (4, 28, 28), (4, 28, 28), (4, 14, 14), (8, 14, 14), (8, 14, 14), (8, 7, 7), (392,), (10,)
    ]
    fig = ch1.pipeline_figure(rows)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"1x28x28", "4x14x14", "8x7x7", "392", "10"} <= texts
    with pytest.raises(ValueError, match="input_shape must be"):
        ch1.layer_shapes(model, (28, 28))
    plt.close(fig)


def test_param_bar_chart_bars_are_the_parameter_counts():
    model = _small_cnn()
    fig = ch1.param_bar_chart(model)
    heights = sorted(int(b.get_width()) for b in fig.axes[0].patches)
    expected = sorted(
        m.weight.numel() + m.bias.numel() for m in model if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    )
    assert heights == expected
    total = sum(p.numel() for p in model.parameters())
    assert f"{total:,}" in fig.axes[0].get_title()
    plt.close(fig)


def test_filter_gallery_draws_every_response():
    img = torch.rand(20, 20)
    kernels = {"blur": torch.full((3, 3), 1 / 9), "edge": torch.tensor([[-1.0, 0, 1]] * 3)}
    responses = {k: F.conv2d(img[None, None], w[None, None])[0, 0] for k, w in kernels.items()}
    fig = ch1.filter_gallery(img, kernels, responses)
    assert sum(len(ax.images) for ax in fig.axes) == 3
    with pytest.raises(ValueError, match="must be 2-D"):
        ch1.filter_gallery(img[None], kernels, responses)
    plt.close(fig)


# --- the explorer widget ------------------------------------------------------------

widgets = pytest.importorskip("ipywidgets")


@pytest.mark.parametrize("n,k,s,p,d", [(5, 3, 1, 0, 1), (7, 3, 2, 1, 1), (12, 5, 3, 2, 2),
                                       (6, 4, 1, 0, 1), (9, 2, 4, 4, 3)])
def test_explorer_label_follows_the_sliders(n, k, s, p, d):
    from labcode.functional import conv_output_size
    from labcode.widgets.conv import ConvExplorer

    explorer = ConvExplorer()
    assert isinstance(explorer.box, widgets.VBox)
    for name, value in zip(("n", "k", "stride", "padding", "dilation"), (n, k, s, p, d)):
        explorer.sliders[name].value = value
    m = conv_output_size(n, k, s, p, d)
    assert explorer.label.value.startswith(f"output {m} x {m}")
    assert explorer.label.value.endswith(f"= {m}")
    assert explorer.picture.out_size == m
    assert explorer.sliders["position"].max == m * m - 1


def test_explorer_position_slider_moves_the_kernel():
    from labcode.widgets.conv import ConvExplorer

    explorer = ConvExplorer(n=6, k=3, stride=1)
    explorer.sliders["position"].value = 5      # 4 x 4 output: row 1, column 1
    assert explorer.picture.output_cell == (1, 1)
    assert explorer.picture.kernel_cells == {(1 + a, 1 + b) for a in range(3) for b in range(3)}
    explorer.sliders["n"].value = 4             # 2 x 2 output: position clamps to 3
    assert explorer.sliders["position"].value == 3
    assert explorer.picture.output_cell == (1, 1)


def test_explorer_reports_a_kernel_that_does_not_fit():
    from labcode.widgets.conv import ConvExplorer

    explorer = ConvExplorer(n=3, k=3)
    explorer.sliders["dilation"].value = 3       # the kernel covers 7 pixels
    assert explorer.label.value.startswith("no output")
    assert explorer.picture.out_size == 0
    with pytest.raises(ValueError, match="n must be an int in"):
        ConvExplorer(n=40)


def test_conv_explorer_displays_picture_then_controls(monkeypatch):
    from labcode.widgets import conv

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    explorer = conv.conv_explorer(n=7, k=3, stride=2)
    assert isinstance(shown[0], matplotlib.figure.Figure)
    assert shown[1] is explorer.box
    assert "output 3 x 3" in shown[0].axes[0].get_title()


def test_feature_rows_figure_shows_each_map():
    rows = {"before": torch.rand(3, 8, 8), "after": torch.rand(3, 4, 4)}
    fig = ch1.feature_rows_figure(rows, ["a", "b", "c"])
    shapes = [ax.images[0].get_array().shape for ax in fig.axes if ax.images]
    assert shapes == [(8, 8)] * 3 + [(4, 4)] * 3
    assert fig.axes[0].get_ylabel() == "before\n8x8"
    with pytest.raises(ValueError, match="must be \\(C, H, W\\)"):
        ch1.feature_rows_figure({"x": torch.rand(8, 8)})
    plt.close(fig)


def test_feature_rows_figure_titles_the_first_full_row():
    fig = ch1.feature_rows_figure({"in": torch.rand(1, 8, 8), "maps": torch.rand(2, 8, 8)}, ["a", "b"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["", "", "a", "b"]
    plt.close(fig)


def test_conv_explorer_without_picture_shows_only_the_controls(monkeypatch):
    from labcode.widgets import conv

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    explorer = conv.conv_explorer(n=6, picture=False)
    assert shown == [explorer.box]
    explorer.sliders["stride"].value = 2        # a change after display redraws into `out`
    assert explorer.picture.out_size == 2
    fig, pic = conv.conv_picture(6, 3, 2)
    assert pic.out_size == 2 and "output 2 x 2" in fig.axes[0].get_title()


def test_pipeline_stages_are_picked_by_layer_type_not_by_position():
    model = _small_cnn()
    stages = ch1.pipeline_stages(model, (1, 28, 28))
    assert stages == [("input", (1, 28, 28)), ("conv 3x3 + ReLU", (4, 28, 28)),
                      ("max pool 2x2", (4, 14, 14)), ("conv 3x3 + ReLU", (8, 14, 14)),
                      ("max pool 2x2", (8, 7, 7)), ("flatten", (392,)), ("fully connected", (10,))]
    # extra layers shift every list index; the stages must not move with them
    from torch import nn
    padded = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.BatchNorm2d(4), nn.Tanh(),
                           nn.AvgPool2d(2), nn.Dropout(0.1), nn.Flatten(), nn.Linear(4 * 14 * 14, 3))
    assert ch1.pipeline_stages(padded, (1, 28, 28)) == [
        ("input", (1, 28, 28)), ("conv 5x5 + Tanh", (4, 28, 28)), ("avg pool 2x2", (4, 14, 14)),
        ("flatten", (784,)), ("fully connected", (3,))]
    with pytest.raises(ValueError, match="no Conv2d, pooling, Flatten or Linear"):
        ch1.pipeline_stages(nn.Sequential(nn.ReLU()), (1, 4, 4))
    plt.close("all")


def test_feature_rows_figure_column_titles_do_not_overlap():
    titles = ["dark to bright, left to right", "bright to dark, left to right",
              "dark to bright, top to bottom", "bright to dark, top to bottom"]
    fig = ch1.feature_rows_figure({"maps": torch.rand(4, 8, 8)}, titles)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes[:4]]
    assert [ax.get_title().replace("\n", " ") for ax in fig.axes[:4]] == titles
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 < right.x0, f"titles overlap: {left} and {right}"
    plt.close(fig)
