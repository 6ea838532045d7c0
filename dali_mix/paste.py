"""Rectangle copies between batches with `fn.multi_paste`, for CHW and HWC images.

`fn.multi_paste` copies rectangles of HWC images and costs almost nothing on the CPU, unlike
arithmetic over whole images. CHW images (the output of `fn.crop_mirror_normalize`) are handled
without a transpose: a contiguous (C, H, W) tensor is viewed as an HWC image of shape
(C*H, W, 1) (a free reshape), and a box becomes C boxes, one per channel plane.
"""
from __future__ import annotations

from nvidia.dali import fn, types

from dali_mix._graph import check_layout


def _const_like(node, value: int):
    """A per-sample int32 constant shaped like the scalar DataNode `node`."""
    return node * 0 + value


def _rows(*rows):
    """Stack per-sample (a, b) pairs into one int32 (R, 2) tensor per sample."""
    return fn.stack(*[fn.stack(a, b) for a, b in rows])


def _as_planes(images, c, h, w):
    """View a (C, H, W) batch as HWC (C*H, W, 1); `c`, `h`, `w` are int32 scalar DataNodes."""
    return fn.reshape(images, shape=fn.stack(c * h, w, c * 0 + 1), layout="HWC")


def paste(images, source, *, src_y, src_x, dst_y, dst_x, h, w, layout: str = "CHW",
          channels: int = 3):
    """Copy a (h, w) box of `source`, starting at (src_y, src_x), into `images` at (dst_y, dst_x).

    Args:
        images: batch of images, layout `layout`, any dtype, CPU or GPU; the canvas.
        source: batch with the same layout, dtype, device and channel count; its spatial size
            may differ (e.g. a shrunk partner image).
        src_y, src_x, dst_y, dst_x, h, w: int32 CPU scalars per sample, in pixels. The box must lie
            inside both images (callers clip). h or w may be 0 (nothing is pasted).
        layout: "CHW" or "HWC".
        channels: number of channels C (must be known when the graph is built, for CHW).

    Returns:
        A batch like `images` with the box replaced.
    """
    check_layout(layout)
    shape = images.shape(dtype=types.INT32, device="cpu")
    src_shape = source.shape(dtype=types.INT32, device="cpu")
    zero = _const_like(h, 0)
    if layout == "HWC":
        H, W = shape[0], shape[1]
        return fn.multi_paste(
            images, source,
            in_anchors=_rows((zero, zero), (src_y, src_x)),
            out_anchors=_rows((zero, zero), (dst_y, dst_x)),
            shapes=_rows((H, W), (h, w)),
            output_size=fn.stack(H, W),
        )
    C, H, W = shape[0], shape[1], shape[2]
    Hs, Ws = src_shape[1], src_shape[2]
    canvas = _as_planes(images, C, H, W)
    planes = _as_planes(source, src_shape[0], Hs, Ws)
    in_rows = [(zero, zero)] + [(Hs * c + src_y, src_x) for c in range(channels)]
    out_rows = [(zero, zero)] + [(H * c + dst_y, dst_x) for c in range(channels)]
    shape_rows = [(C * H, W)] + [(h, w)] * channels
    out = fn.multi_paste(
        canvas, *([planes] * channels),
        in_anchors=_rows(*in_rows),
        out_anchors=_rows(*out_rows),
        shapes=_rows(*shape_rows),
        output_size=fn.stack(C * H, W),
    )
    return fn.reshape(out, shape=fn.stack(C, H, W), layout="CHW")
