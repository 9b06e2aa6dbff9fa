"""lamina.conv_kernels: the padding plan, im2col/col2im, the forward against a naive loop, and the
backward against central differences (float64), over 1D/2D/3D, strides, dilation, groups and padding."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lamina import conv_kernels as ck
from tests.helpers.gradcheck import check_gradients


def naive_conv(x, kernel, strides, pads, dilation, groups):
    """The definition, one output element at a time."""
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    ksize = kernel.shape[:-2]
    cg, filters = kernel.shape[-2:]
    fg = filters // groups
    outs = [(n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(xp.shape[1:-1], ksize, strides, dilation)]
    y = np.zeros((x.shape[0], *outs, filters))
    for b in range(x.shape[0]):
        for o in np.ndindex(*outs):
            for f in range(filters):
                g = f // fg
                total = 0.0
                for k in np.ndindex(*ksize):
                    pos = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, strides, dilation))
                    total += xp[(b, *pos, slice(g * cg, (g + 1) * cg))] @ kernel[(*k, slice(None), f)]
                y[(b, *o, f)] = total
    return y


@pytest.mark.parametrize("n,k,s,d,padding,expected", [
    (7, 3, 1, 1, "valid", (5, 0, 0)), (7, 3, 2, 1, "valid", (3, 0, 0)), (7, 3, 1, 2, "valid", (3, 0, 0)),
    (7, 3, 1, 1, "same", (7, 1, 1)), (7, 4, 1, 1, "same", (7, 1, 2)), (7, 3, 2, 1, "same", (4, 1, 1)),
    (8, 3, 2, 1, "same", (4, 0, 1)), (7, 3, 1, 2, "same", (7, 2, 2)), (7, 3, 1, 2, "causal", (7, 4, 0)),
    (7, 3, 3, 1, "causal", (3, 2, 0)), (2, 3, 1, 1, "valid", (0, 0, 0)),
])
def test_plan_follows_keras_padding_rules(n, k, s, d, padding, expected):
    assert ck.plan(n, k, s, d, padding) == expected


def test_plan_rejects_unknown_padding():
    with pytest.raises(ValueError, match="padding='full'"):
        ck.plan(5, 3, 1, 1, "full")


def test_pad_input_copies_only_when_padding():
    x = np.ones((2, 3, 4, 1), "float32")
    assert ck.pad_input(x, [(0, 0), (0, 0)]) is x
    xp = ck.pad_input(x, [(1, 0), (0, 2)])
    assert xp.shape == (2, 4, 6, 1) and xp.dtype == np.float32
    assert xp[:, 0].sum() == 0 and xp[:, :, 4:].sum() == 0 and xp[:, 1:, :4].sum() == x.sum()


@pytest.mark.parametrize("channels", [1, 3, 9])  # both copy paths (one channel / several)
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_im2col_col2im_are_adjoint(dims, channels):
    rng = np.random.default_rng(dims)
    xp = rng.standard_normal((2, *(6,) * dims, channels))
    ksize, strides, dilation = (2, 3, 2)[:dims], (2, 1, 3)[:dims], (1, 2, 1)[:dims]
    out = tuple((n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(xp.shape[1:-1], ksize, strides, dilation))
    cols = ck.im2col(xp, ksize, strides, dilation, out)
    assert cols.shape == (2, *out, *ksize, channels) and cols.flags.c_contiguous
    for o in itertools.islice(np.ndindex(*out), 5):
        for k in np.ndindex(*ksize):
            pos = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, strides, dilation))
            np.testing.assert_array_equal(cols[(slice(None), *o, *k)], xp[(slice(None), *pos)])
    dcols = rng.standard_normal(cols.shape)
    dxp = ck.col2im(dcols, xp.shape, ksize, strides, dilation, out)
    np.testing.assert_allclose(np.vdot(cols, dcols), np.vdot(xp, dxp), rtol=1e-12)


def test_im2col_fills_a_given_buffer():
    xp = np.arange(2 * 5 * 5 * 2, dtype="float32").reshape(2, 5, 5, 2)
    buffer = np.empty((2, 3, 3, 3, 3, 2), "float32")
    assert ck.im2col(xp, (3, 3), (1, 1), (1, 1), (3, 3), buffer=buffer) is buffer
    np.testing.assert_array_equal(buffer[:, 1, 2, 0, 1], xp[:, 1, 3])


CASES = [  # dims, spatial, kernel, strides, dilation, pads, channels, filters, groups
    (1, (9,), (3,), (1,), (1,), [(0, 0)], 3, 4, 1),
    (1, (9,), (3,), (2,), (1,), [(1, 1)], 2, 3, 1),
    (1, (10,), (2,), (1,), (3,), [(3, 0)], 4, 6, 2),
    (2, (7, 6), (3, 2), (1, 1), (1, 1), [(0, 0), (0, 0)], 1, 2, 1),
    (2, (7, 6), (3, 3), (2, 1), (1, 1), [(1, 1), (0, 1)], 3, 4, 1),
    (2, (8, 8), (2, 3), (1, 1), (2, 1), [(1, 2), (1, 1)], 4, 4, 4),
    (2, (6, 7), (3, 1), (3, 2), (1, 1), [(0, 0), (0, 0)], 6, 9, 3),
    (3, (5, 4, 6), (2, 2, 3), (1, 2, 1), (1, 1, 1), [(0, 1), (1, 0), (1, 1)], 2, 3, 1),
    (3, (6, 5, 5), (2, 2, 2), (1, 1, 1), (2, 1, 2), [(0, 0), (0, 0), (1, 1)], 4, 2, 2),
]


@pytest.mark.parametrize("case", CASES)
def test_conv_forward_matches_naive_loop(case):
    dims, spatial, ksize, strides, dilation, pads, channels, filters, groups = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *spatial, channels))
    kernel = rng.standard_normal((*ksize, channels // groups, filters))
    y = ck.conv_forward(x, kernel, strides, pads, dilation, groups)
    np.testing.assert_allclose(y, naive_conv(x, kernel, strides, pads, dilation, groups), rtol=1e-12, atol=1e-12)
    y32 = ck.conv_forward(x.astype("float32"), kernel.astype("float32"), strides, pads, dilation, groups)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_conv_gradients_match_central_differences(case):
    dims, spatial, ksize, strides, dilation, pads, channels, filters, groups = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, *spatial, channels))
    kernel = rng.standard_normal((*ksize, channels // groups, filters))
    check_gradients(lambda a, k: ck.conv(a, k, strides, pads, dilation, groups), x, kernel, empty_batch=True)


def test_chunked_batches_equal_one_pass(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 6, 6, 3)).astype("float32")
    kernel = rng.standard_normal((3, 3, 3, 4)).astype("float32")
    dy = rng.standard_normal((5, 6, 6, 4)).astype("float32")
    pads = [(1, 1), (1, 1)]
    whole = ck.conv_forward(x, kernel, (1, 1), pads, (1, 1))
    dx, dk = ck.conv_backward(dy, x, kernel, (1, 1), pads, (1, 1))
    monkeypatch.setattr(ck, "CHUNK_BYTES", 1)  # one sample per chunk
    np.testing.assert_allclose(ck.conv_forward(x, kernel, (1, 1), pads, (1, 1)), whole, rtol=1e-6)
    dx1, dk1 = ck.conv_backward(dy, x, kernel, (1, 1), pads, (1, 1))
    np.testing.assert_allclose(dx1, dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dk1, dk, rtol=1e-5, atol=1e-5)


def test_backward_options_out_buffers_and_no_dx():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 5, 2)).astype("float32")
    kernel = rng.standard_normal((2, 2, 2, 3)).astype("float32")
    y = np.empty((2, 4, 4, 3), "float32")
    assert ck.conv_forward(x, kernel, (1, 1), [(0, 0)] * 2, (1, 1), out=y) is y
    dy = rng.standard_normal(y.shape).astype("float32")
    flat = np.empty(kernel.size, "float32")
    dx, dk = ck.conv_backward(dy, x, kernel, (1, 1), [(0, 0)] * 2, (1, 1), need_dx=False, dk_out=flat)
    assert dx is None and dk is flat and dk.dtype == np.float32
    np.testing.assert_allclose(flat.reshape(kernel.shape), ck.conv_backward(dy, x, kernel, (1, 1), [(0, 0)] * 2,
                                                                             (1, 1))[1], rtol=1e-6)


def test_bad_geometry_is_reported():
    x = np.zeros((1, 3, 3, 4))
    with pytest.raises(ValueError, match="no output position"):
        ck.conv_forward(x, np.zeros((5, 5, 4, 1)), (1, 1), [(0, 0)] * 2, (1, 1))
    with pytest.raises(ValueError, match="groups=3"):
        ck.conv_forward(x, np.zeros((1, 1, 1, 3)), (1, 1), [(0, 0)] * 2, (1, 1), 3)


def test_reused_scratch_buffers_never_leak_between_calls():
    rng = np.random.default_rng(4)
    big = rng.standard_normal((3, 9, 9, 5))
    small = rng.standard_normal((2, 4, 4, 5))
    kernel = rng.standard_normal((3, 3, 5, 2))
    pads = [(1, 1), (2, 0)]
    want_small = naive_conv(small, kernel, (1, 1), pads, (1, 1), 1)
    ck.conv_forward(big, kernel, (1, 1), pads, (1, 1))  # fills the scratch buffers with other values
    np.testing.assert_allclose(ck.conv_forward(small, kernel, (1, 1), pads, (1, 1)), want_small, rtol=1e-12)
    dy = rng.standard_normal(want_small.shape)
    dx1, dk1 = ck.conv_backward(dy, small, kernel, (1, 1), pads, (1, 1))
    ck.conv_backward(rng.standard_normal((3, 9, 9, 2)), big, kernel, (1, 1), pads, (1, 1))
    dx2, dk2 = ck.conv_backward(dy, small, kernel, (1, 1), pads, (1, 1))
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(dk1, dk2)
    assert not np.shares_memory(dx1, dx2) and not np.shares_memory(dk1, dk2)


def test_grouped_dkernel_into_a_flat_buffer():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 5, 6))
    kernel = rng.standard_normal((3, 2, 2, 9))  # 3 groups of 2 channels -> 3 filters each
    dy = rng.standard_normal((2, 4, 4, 9))
    flat = np.empty(kernel.size)
    _, dk = ck.conv_backward(dy, x, kernel, (1, 1), [(0, 0)] * 2, (1, 1), 3, need_dx=False, dk_out=flat)
    assert dk is flat
    np.testing.assert_allclose(flat.reshape(kernel.shape),
                               ck.conv_backward(dy, x, kernel, (1, 1), [(0, 0)] * 2, (1, 1), 3)[1], rtol=1e-12)
