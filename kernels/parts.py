"""DensePose's part labels, defined once for the kernels, the colormaps and the pipeline's value types.

A part label is a channel index of the fine segmentation: 0 is the background, 1..24 are the body
parts. The coarse segmentation has two channels: background and person.
"""

N_PART_LABELS = 25  # part labels 0..24
N_FINE_CHANNELS = N_PART_LABELS  # the fine segmentation (and U, V) has one channel per part label
N_COARSE_CHANNELS = 2  # background, person


def check_charts(boxes_xyxy, coarse_segm, fine_segm, u=None, v=None) -> None:
    """The one shape check of DensePose chart outputs (``ValueError`` saying what is wrong): boxes [N, 4],
    coarse [N, 2, S, S'], fine (and u, v when given) [N, 25, S, S'], one spatial size S x S' >= 1 when N > 0
    (with N = 0 the sizes may differ: some exports return bare empties when nobody is found).

    Used by the render (its inputs), the pipeline's ``Detections`` and the model loader (a model's outputs).
    """
    if getattr(boxes_xyxy, "ndim", None) != 2 or boxes_xyxy.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must have shape [N, 4], got {_shape(boxes_xyxy)}")
    n = int(boxes_xyxy.shape[0])
    spatial = None
    charts = (("coarse_segm", coarse_segm, N_COARSE_CHANNELS), ("fine_segm", fine_segm, N_FINE_CHANNELS),
              ("u", u, N_FINE_CHANNELS), ("v", v, N_FINE_CHANNELS))
    for name, t, channels in charts:
        if t is None:
            continue
        if getattr(t, "ndim", None) != 4 or t.shape[0] != n or t.shape[1] != channels:
            raise ValueError(f"{name} must have shape [{n}, {channels}, S, S] for {n} boxes, got {_shape(t)}")
        if spatial is None:
            spatial = tuple(t.shape[2:])
        elif n and tuple(t.shape[2:]) != spatial:  # nobody found: some exports return bare empties
            raise ValueError(f"{name} has spatial size {list(t.shape[2:])}, not {list(spatial)} like coarse_segm")
    if n and spatial is not None and min(spatial) < 1:
        raise ValueError(f"the charts' spatial size must be at least 1 x 1, got {list(spatial)}")


def _shape(t) -> str:
    return str(list(t.shape)) if hasattr(t, "shape") else type(t).__name__
